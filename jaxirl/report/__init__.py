"""Figures and markdown for the study report."""
