"""The end-to-end study: resumable stages and the report."""
