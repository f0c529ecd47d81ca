"""The relation-text experiment (docs/relations.md) and the modules only it uses: cross-attention capture
(``cross_attention``) and a TokenCompose-style token grounding loss (``attention``)."""
