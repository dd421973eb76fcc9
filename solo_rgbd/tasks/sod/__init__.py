"""RGB-D salient object detection: the DCF-like decoder, its LightningModule and the probes."""
