"""Secure comparison and top-N selection (DESIGN 3.5, 3.6): see issue 4."""
