"""The attention course's autograder: release the lessons, check one notebook, grade a class."""
