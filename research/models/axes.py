"""Logical axis names (docs/design.md). Sharding rules map these onto mesh axes."""
BATCH = 'batch'
LENGTH = 'length'
EMBED = 'embed'
MLP = 'mlp'
HEADS = 'heads'
KV_HEADS = 'kv_heads'
HEAD_DIM = 'head_dim'
VOCAB = 'vocab'
LAYERS = 'layers'

ALL = (BATCH, LENGTH, EMBED, MLP, HEADS, KV_HEADS, HEAD_DIM, VOCAB, LAYERS)

# Activation layouts used by `nn.with_logical_constraint`.
ACT_BLD = (BATCH, LENGTH, EMBED)
ACT_BLF = (BATCH, LENGTH, MLP)
ACT_BLV = (BATCH, LENGTH, VOCAB)
ACT_BLHD = (BATCH, LENGTH, HEADS, HEAD_DIM)
ACT_BLKD = (BATCH, LENGTH, KV_HEADS, HEAD_DIM)
