"""Catalogs: the labelled track lists a folder scan or a Spotify crawl writes, versioned by content, and the label
overrides users accept from audits.
"""
