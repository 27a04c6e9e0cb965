"""What the lessons share and do not grade: synthetic tasks, training loops, plots, guards for the ungraded cells."""
