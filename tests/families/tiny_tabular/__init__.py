"""A tiny task family that lives outside zoo/ (tabular classification of Fisher's iris measurements, as shipped in
scikit-learn's bundled ``iris.csv``), added with one folder plus one registry line: the proof that a family needs no
edit outside its folder."""
