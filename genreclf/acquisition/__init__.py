"""Audio: each catalog track found, downloaded, decoded once and stored by content, with its segment offsets."""
