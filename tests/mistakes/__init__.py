"""A catalog of answers students write: wrong ones that must lose points, correct ones in other styles
that must get full marks. One module per lesson (`lesson02.py`, ...), each with two lists, WRONG and
CORRECT, of `Answer`s."""
