"""Training: the loop (``trainer``: a run from a config, resumable), optimizer and learning-rate schedules
(``optim``), fine-tuning from a pretrained checkpoint (``finetune``, ``torchvision_import``) and the run folder
(``run_folder``: what a run writes and how --resume finds it). The objectives it optimises are in ``distill``."""
