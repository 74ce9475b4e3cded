"""Network compression: pruning (prune.py, structured.py), weight sharing (share.py),
uniform quantisation (quant.py), low rank (lowrank.py), entropy coding (huffman.py) and the
packed on-disk format that stores the result (packed.py)."""
