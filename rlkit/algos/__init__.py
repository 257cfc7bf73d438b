"""Pure tensor math of the RL algorithms: no Hydra, MLflow or model imports here."""
