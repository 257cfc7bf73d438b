"""Memory per GPU of every real model preset, from its exact shape (rlkit.models.shapes, meta device) and
DeepSpeed's own estimators: does each preset's resource block add up on 80 GB and 141 GB GPUs?

Prints the markdown table of docs/scale.md. Assumptions (stated there): DeepSpeed presets train in bf16
(trainer.bf16=true: 16-bit weights, fp32 master copy and Adam moments, as DeepSpeed's estimators count);
the torch backend (zero_stage 0) keeps fp32 weights (16 bytes per parameter with Adam); the reference
model is a frozen copy (bf16 under DeepSpeed, sharded under ZeRO-3; fp32 under the torch backend);
vLLM (bf16 weights over tensor_parallel GPUs) takes rollout.vllm.gpu_memory_utilization of each GPU
while it generates; the update's logits are fp32 over the whole micro-batch (logits, log-softmax and
their gradient: 3 copies) at the 16k budget (16,384 response + 1,024 prompt tokens); each layer keeps
~34 x hidden bytes per token for the backward (bf16; twice that in fp32 under the torch backend), or, with
model.activation_checkpointing, only its 2 x hidden input plus one layer's worth during the recomputation.

    python bench/preset_memory.py [--util 0.3] [--response 16384] [--prompt 1024]
"""
from __future__ import annotations

import argparse
import contextlib
import io

GB = 1e9


def model_states(p: int, largest: int, gpus_per_node: int, nodes: int, stage: int) -> float:
    """Bytes per GPU of weights + gradients + optimizer state (DeepSpeed's estimators for ZeRO-2/3)."""
    if stage == 0:
        return 16.0 * p  # fp32 weights, fp32 grads, Adam m and v (torch backend)
    with contextlib.redirect_stdout(io.StringIO()):
        if stage == 3:
            from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

            return float(estimate_zero3_model_states_mem_needs(p, largest, gpus_per_node, nodes, cpu_offload=False,
                                                               cpu_offload_params=False, zero_init=False)[1])
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        return float(estimate_zero2_model_states_mem_needs(p, gpus_per_node, nodes, cpu_offload=False)[1])


def rows(util: float, response: int, prompt: int) -> list[dict]:
    from rlkit.models.shapes import REAL_PRESETS, meta_model, n_params, preset

    out = []
    for name in REAL_PRESETS:
        cfg = preset(name)
        r, a = cfg.resources, cfg.arch
        model = meta_model(cfg)
        p = n_params(model)
        largest = max(t.numel() for t in model.parameters())
        gpus = r.gpus_per_node * r.nodes
        states = model_states(p, largest, r.gpus_per_node, r.nodes, r.zero_stage)
        ref = 4.0 * p if r.zero_stage == 0 else 2.0 * p / (gpus if r.zero_stage == 3 else 1)
        head_dim = a.hidden_size // a.num_attention_heads
        kv_token = 2 * a.num_hidden_layers * a.num_key_value_heads * head_dim * 2 / r.tensor_parallel  # bf16 K+V
        seq = prompt + response
        logits = 3 * 4.0 * r.micro_batch_size * seq * a.vocab_size
        ckpt = bool(cfg.get("activation_checkpointing"))
        per_layer = 34.0 * a.hidden_size * seq * r.micro_batch_size * (2 if r.zero_stage == 0 else 1)  # fp32 on torch
        acts = (2.0 * a.hidden_size * seq * r.micro_batch_size * a.num_hidden_layers + per_layer) if ckpt \
            else per_layer * a.num_hidden_layers
        row = {"preset": name, "params": p, "gpus": f"{r.nodes}x{r.gpus_per_node}", "zero": r.zero_stage,
               "tp": r.tensor_parallel, "mb": r.micro_batch_size, "states": states, "ref": ref, "logits": logits, "acts": acts, "ckpt": ckpt,
               "kv_seq": kv_token * seq}
        for g in (80, 141):
            share = util * g * GB
            weights = 2.0 * p / r.tensor_parallel
            row[f"kv_{g}"] = share - weights
            row[f"seqs_{g}"] = max(0.0, share - weights) / (kv_token * seq)
            row[f"rollout_{g}"] = states + ref + share  # vLLM awake beside the trainer's resident state
            row[f"train_{g}"] = states + ref + logits + acts  # vLLM asleep (KV cache dropped, weights in host memory)
        out.append(row)
    return out


def table(util: float, response: int, prompt: int) -> str:
    head = ("| preset | params | nodes x GPUs | ZeRO | vLLM TP | micro-batch | weights+grads+optimizer /GPU | reference "
            "/GPU | update logits /GPU | layer activations /GPU (recompute) | KV cache per sequence | vLLM share, 80 / 141 GB | KV room (sequences) 80 / 141 "
            "| rollout peak 80 / 141 | update peak 80 / 141 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows(util, response, prompt):
        def ok(x: float, g: int) -> str:
            return f"{x / GB:.1f}" + ("" if x <= g * GB else " **over**")

        lines.append(
            f"| {r['preset']} | {r['params'] / 1e9:.2f}B | {r['gpus']} | {r['zero']} | {r['tp']} | {r['mb']} | "
            f"{r['states'] / GB:.1f} GB | {r['ref'] / GB:.1f} GB | {r['logits'] / GB:.1f} GB | {r['acts'] / GB:.1f} GB ({'yes' if r['ckpt'] else 'no'}) | {r['kv_seq'] / GB:.2f} GB | "
            f"{util * 80:.0f} / {util * 141:.0f} GB | {r['kv_80'] / GB:.1f} GB ({r['seqs_80']:.1f}) / "
            f"{r['kv_141'] / GB:.1f} GB ({r['seqs_141']:.1f}) | {ok(r['rollout_80'], 80)} / {ok(r['rollout_141'], 141)} | "
            f"{ok(r['train_80'], 80)} / {ok(r['train_141'], 141)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--util", type=float, default=0.3, help="rollout.vllm.gpu_memory_utilization")
    ap.add_argument("--response", type=int, default=16384, help="response tokens (length=16k)")
    ap.add_argument("--prompt", type=int, default=1024, help="prompt tokens")
    args = ap.parse_args()
    print(table(args.util, args.response, args.prompt))


if __name__ == "__main__":
    main()
