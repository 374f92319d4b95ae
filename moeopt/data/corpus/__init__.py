"""Bundled text corpus sample (Python reference topics, PSF licence); see README.md."""
