"""Byte units, defined once for the whole book.

A GB (gigabyte) is 10**9 bytes, the unit of marketing and of many blog posts; a GiB
(gibibyte) is 2**30 bytes, the unit of ``nvidia-smi``, of PyTorch's memory statistics
and of this book. The two differ by 7.4%.
"""

KIB = 2**10
MIB = 2**20
GIB = 2**30
GB = 10**9
