"""Methods that train a head on a pretrained EfficientNet: regression (lat/lon) and contrastive (a geo-aware
embedding searched by k-NN). config, data (cached or live inputs), net (body + head), method (training loop,
calibration, persistence shared by both), regression, contrastive."""
