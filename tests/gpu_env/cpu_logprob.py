"""Test scaffolding only, never library code: a CPU stand-in for trl 1.15's Triton log-prob kernel.

trl 1.15's GRPOTrainer computes per-token log-probs with ``ChunkedLogProbFunction`` (Triton; it avoids the
``[tokens, vocab]`` logits on a GPU). Without Triton (the CPU torch wheel) trl leaves it None and a GRPO step stops
there (tests/gpu_env/test_training.py shows where). This stand-in computes the same outputs from full logits, which a
tiny vocabulary affords, so the rest of the step runs with the GPU environment's pins. Adapted from
shared/reference/gpu-env-on-cpu/cpu_kernel_shim.py.
"""

from __future__ import annotations


class CPULogProb:
    """``apply`` with the signature and outputs of ``trl.kernels.ChunkedLogProbFunction.apply``."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None, logit_scale=1.0,
              outputs=("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")):
        import torch

        logits = (hidden @ weight.T.to(hidden.dtype)).float()
        if bias is not None:
            logits = logits + bias.float()
        logits = logits * logit_scale
        if final_logit_softcapping is not None:
            logits = final_logit_softcapping * torch.tanh(logits / final_logit_softcapping)
        logits = logits / temperature
        logp = torch.log_softmax(logits, -1)
        outputs = outputs or ()
        return (logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1),
                -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None,
                torch.logsumexp(2 * logp, -1) if "log_sum_sq_probs" in outputs else None,
                logits.mean(-1) if "mean_logits" in outputs else None,
                (logits.argmax(-1) == targets) if "is_top1" in outputs else None)
