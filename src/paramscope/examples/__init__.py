"""Built-in example models, written in plain torch (no torchvision, no transformers).

Used by ``make demo``, the documentation and the tests. Each is an ordinary ``nn.Module`` factory, so it works as a
CLI target, e.g. ``paramscope inspect paramscope.examples:resnet18``.

- :func:`resnet18`, :func:`resnet34`, :func:`resnet50`: torchvision's ResNets layer for layer (11,689,512,
  21,797,672 and 25,557,032 parameters with 1000 classes).
- :func:`gpt2`: a GPT-2-style decoder with the LM head tied to the token embedding; the defaults are GPT-2 small
  (124,439,808 parameters).
"""

from .gpt import GPT, GPTConfig, gpt2
from .resnet import ResNet, resnet18, resnet34, resnet50

__all__ = ["GPT", "GPTConfig", "ResNet", "gpt2", "resnet18", "resnet34", "resnet50"]
