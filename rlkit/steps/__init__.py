"""The RL step's named pieces, one responsibility each; rlkit.train.train() calls them in data-flow order.

parts      the run's moving parts in one object (model, engine, rewards, stream, ...), built once; checkpoints
sample     prompts -> rollouts -> scores (DAPO's extra rounds included)
advantage  no-grad passes (old/ref logprobs, values), token rewards, advantages
update     epochs x mini-batches x micro-batches of the policy (and critic) loss
evaluate   held-out accuracy
metrics    explicit per-step timers and the step's metrics (each declaring its reduction over ranks)
log        the tracker interface the loop logs to (MLflow's Tracker, or a stand-in)

Other entry points (passrate, the benchmark, tests) import these instead of re-implementing or patching them.
"""
