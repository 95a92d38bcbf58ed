"""Training small reasoning models: distillation, GRPO with verifiable rewards, PRMs from
Monte-Carlo labels, through TRL. Needs `pip install 'ponder[train]'` (torch, transformers, TRL,
peft, datasets); nothing here is imported by `import ponder`."""
