"""genreclf: turn public music catalogs into a music-genre classifier."""

__version__ = "0.1.0"
