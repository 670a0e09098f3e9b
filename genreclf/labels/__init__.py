"""The label audit: clips whose label the audio disputes, near-duplicates and outliers, found out of fold."""
