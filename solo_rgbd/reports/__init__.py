"""Self-contained HTML reports of runs (``solo-rgbd report PATH``)."""
