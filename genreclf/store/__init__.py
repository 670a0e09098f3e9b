"""The store: one interface over a local folder or S3 (atomic writes, conditional puts), the keys every object lives
under, and S3's errors in words.
"""
