# predictive loss tests
