"""The reward models of the Python baseline: plain PyTorch, no transformers package.

A DistilBERT-layout encoder with a scalar head, laid out as Hugging Face's
DistilBertForSequenceClassification (num_labels = 1) so that its state-dict names are those of
the model.safetensors our trainer writes, computing what core/model/distilbert_model.cc
computes: learned positions, post-norm blocks (LayerNorm eps 1e-12), exact GELU, padding keys
masked to -inf, the first token's state through pre_classifier, ReLU and classifier. No
dropout: our trainer has none, and the comparison is of the same computation.

Also a minimal safetensors reader (an 8-byte little-endian header length, a JSON header,
raw little-endian tensor bytes) and the tokenizer framing of the "concat" input rule.

Also the Llama layout (LlamaForSequenceClassification: RMSNorm, rotate-half RoPE, grouped-query
attention, SwiGLU, no biases, pooled at the last real token), as core/model/llama_model.cc
computes it for model_type "llama" without RoPE scaling or a sliding window.
"""

import json
import math
import struct
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """Returns {name: tensor} from a .safetensors file (a fresh copy of every tensor)."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        dtype = _DTYPES[info["dtype"]]
        tensors[name] = torch.frombuffer(raw, dtype=dtype).reshape(info["shape"]).clone()
    return tensors


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["dim"])
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["dim"])
        self.LayerNorm = nn.LayerNorm(c["dim"], eps=1e-12)

    def forward(self, ids):
        positions = torch.arange(ids.size(1), device=ids.device)
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions)[None])


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["dim"]
        self.heads = c["n_heads"]
        self.head_dim = d // self.heads
        self.q_lin, self.k_lin = nn.Linear(d, d), nn.Linear(d, d)
        self.v_lin, self.out_lin = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, key_mask):
        b, t, _ = x.shape

        def split(y):
            return y.view(b, t, self.heads, self.head_dim).transpose(1, 2)

        q = split(self.q_lin(x)) / math.sqrt(self.head_dim)
        k, v = split(self.k_lin(x)), split(self.v_lin(x))
        scores = torch.matmul(q, k.transpose(-1, -2)).masked_fill(key_mask, float("-inf"))
        context = torch.matmul(torch.softmax(scores, -1), v).transpose(1, 2).reshape(b, t, -1)
        return self.out_lin(context)


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin1 = nn.Linear(c["dim"], c["hidden_dim"])
        self.lin2 = nn.Linear(c["hidden_dim"], c["dim"])

    def forward(self, x):
        return self.lin2(F.gelu(self.lin1(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.sa_layer_norm = nn.LayerNorm(c["dim"], eps=1e-12)
        self.ffn = FeedForward(c)
        self.output_layer_norm = nn.LayerNorm(c["dim"], eps=1e-12)

    def forward(self, x, key_mask):
        h = self.sa_layer_norm(x + self.attention(x, key_mask))
        return self.output_layer_norm(h + self.ffn(h))


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))

    def forward(self, x, key_mask):
        for block in self.layer:
            x = block(x, key_mask)
        return x


class DistilBert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.transformer = Transformer(c)

    def forward(self, ids, mask):
        key_mask = (mask == 0).view(mask.size(0), 1, 1, -1)
        return self.transformer(self.embeddings(ids), key_mask)


class DistilBertReward(nn.Module):
    """DistilBertForSequenceClassification (num_labels 1): one reward per row."""

    def __init__(self, config):
        super().__init__()
        if config.get("model_type") != "distilbert":
            raise ValueError(f"only the DistilBERT layout is implemented, not "
                             f"{config.get('model_type')!r}")
        self.config = config
        self.distilbert = DistilBert(config)
        self.pre_classifier = nn.Linear(config["dim"], config["dim"])
        self.classifier = nn.Linear(config["dim"], 1)

    def forward(self, ids, mask):
        first = self.distilbert(ids, mask)[:, 0]
        return self.classifier(torch.relu(self.pre_classifier(first))).squeeze(-1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rotate_half(x):
    a, b = x.chunk(2, -1)
    return torch.cat((-b, a), -1)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.head_dim = c.get("head_dim") or d // self.heads
        self.q_proj = nn.Linear(d, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin, hidden_mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if self.kv_heads != self.heads:  # as transformers' repeat_kv
            k = k.repeat_interleave(self.heads // self.kv_heads, 1)
            v = v.repeat_interleave(self.heads // self.kv_heads, 1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        weights = torch.softmax(scores.masked_fill(hidden_mask, float("-inf")), -1)
        return self.o_proj(torch.matmul(weights, v).transpose(1, 2).reshape(b, t, -1))


class LlamaMlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, i, bias=False)
        self.up_proj = nn.Linear(d, i, bias=False)
        self.down_proj = nn.Linear(i, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("rms_norm_eps", 1e-6)
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMlp(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)

    def forward(self, x, cos, sin, hidden_mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, hidden_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(LlamaLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c.get("rms_norm_eps", 1e-6))
        head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        theta = float(c.get("rope_theta", 10000.0))
        self.inv_freq = torch.tensor([theta ** (-i / head_dim) for i in range(0, head_dim, 2)],
                                     dtype=torch.float32)

    def forward(self, ids, mask):
        t = ids.size(1)
        x = self.embed_tokens(ids)
        freqs = torch.outer(torch.arange(t, dtype=torch.float32), self.inv_freq)
        angles = torch.cat((freqs, freqs), -1)
        cos, sin = angles.cos(), angles.sin()
        future = torch.ones(t, t, dtype=torch.bool).triu(1)
        hidden_mask = future.view(1, 1, t, t) | (mask == 0).view(mask.size(0), 1, 1, t)
        for layer in self.layers:
            x = layer(x, cos, sin, hidden_mask)
        return self.norm(x)


class LlamaReward(nn.Module):
    """LlamaForSequenceClassification (num_labels 1), pooled at each row's last real token
    (Hugging Face's rule: the rightmost position that is neither masked nor pad_token_id)."""

    def __init__(self, config):
        super().__init__()
        for key in ("rope_scaling", "sliding_window"):
            if config.get(key):
                raise ValueError(f"{key} is not implemented in the baseline")
        if config.get("attention_bias") or config.get("mlp_bias"):
            raise ValueError("biases are not implemented in the baseline")
        self.config = config
        self.model = Llama(config)
        self.score = nn.Linear(config["hidden_size"], 1, bias=False)

    def forward(self, ids, mask):
        hidden = self.model(ids, mask)
        real = mask.long()
        pad = self.config.get("pad_token_id")
        if pad is not None and pad >= 0:
            real = real * ids.ne(pad).long()
        last = (real * torch.arange(ids.size(1))).amax(1)
        return self.score(hidden[torch.arange(ids.size(0)), last]).squeeze(-1)


def load_model(model_dir):
    """The reward model of a verdict model directory (config.json + model.safetensors)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") == "llama":
        model = LlamaReward(config)
    else:
        model = DistilBertReward(config)
    state = read_safetensors(model_dir / "model.safetensors")
    model.load_state_dict(state, strict=True)
    return model


def pad_batch(rows, pad_id):
    """Right-pads id lists to the longest: (ids [B, T] int64, mask [B, T] int64)."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), longest), dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
        mask[i, :len(r)] = 1
    return ids, mask


class ConcatEncoder:
    """The "concat" input rule as TRL applies it: BOS + pieces(prompt + response) + EOS,
    truncated to max_length as verdict's TRUNCATE does."""

    def __init__(self, model_dir):
        import sentencepiece  # Debian: python3-sentencepiece

        model_dir = Path(model_dir)
        self.sp = sentencepiece.SentencePieceProcessor(
            model_file=str(model_dir / "tokenizer.model"))
        encoding = json.loads((model_dir / "encoding.json").read_text())
        self.max_length = int(encoding.get("max_length", 512))
        self.bos, self.eos = self.sp.bos_id(), self.sp.eos_id()

    def encode(self, prompt, response):
        body = self.sp.encode(prompt + response)
        if body and body[-1] == self.eos:
            body = body[:-1]
        excess = len(body) - (self.max_length - 2)
        if excess > 0:
            # As verdict truncates: the prompt's start first, then the response's end (where
            # the prompt ends within the joint pieces is approximated by the prompt's pieces).
            prompt_len = min(len(self.sp.encode(prompt)), len(body))
            from_prompt = min(excess, prompt_len)
            body = body[from_prompt:len(body) - (excess - from_prompt)]
        return [self.bos] + body + [self.eos]
