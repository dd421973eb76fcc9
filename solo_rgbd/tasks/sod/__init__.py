"""RGB-D salient object detection: the DCF-like decoder (``model``), its LightningModule
(``module``), the pretraining probes (``probes``) and its task spec (``spec.SOD``)."""
