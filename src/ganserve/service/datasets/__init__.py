"""Datasets over HTTP: uploads of image zips, checked, decoded and packed."""
