"""Task families, one folder each (issue "Families as plugins"): everything a family knows lives in its folder."""
