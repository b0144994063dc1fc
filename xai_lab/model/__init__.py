"""Model layer: the network, training, calibration, metrics, evaluation and model storage with cards."""
