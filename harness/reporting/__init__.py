"""The report: tables, summary.md, plots and the one writer of results folders."""
