"""Pictures and HTML reports of results: figures, thumbnails, contact sheets."""
