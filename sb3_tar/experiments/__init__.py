"""Experiments at scale: sweep grids, resumable run storage, local and Ray backends, reports."""
