"""The classroom: exercise checkers, the interactive variance explorer, plots, assignment release and grading."""
