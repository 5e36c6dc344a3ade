# contrastive loss tests
