"""Imputation of missing values: masks, GAIN, a denoising autoencoder, scikit-learn baselines."""
