"""The one table of element types: every size paramscope prints is computed from it.

>>> from paramscope import dtypes
>>> dtypes.lookup("bf16").nbytes(1000), dtypes.lookup("int4").packed_nbytes(1000)
(2000, 500)

Each entry says how a tensor of that type is *stored*: ``block_bytes`` bytes hold ``block_elements`` elements, so
``n`` elements take ``ceil(n / block_elements) * block_bytes`` bytes. This covers plain types (1 element, k bytes),
types torch packs (``quint4x2``: two 4-bit values per byte) and, later, block-quantised formats (GGUF's Q4_0: 32
values in 18 bytes). ``bits`` is the information width of one value, which is what a conversion to that type costs
when packed (``int4``: 4 bits), even where plain torch stores one value per byte.

The table is checked against torch itself in the tests: for every dtype of the installed torch, the bytes the table
gives equal the bytes of a real tensor's storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ._errors import UsageError

__all__ = ["COMMON", "DTYPES", "DType", "find", "iter_dtypes", "lookup"]

Category = Literal["float", "int", "uint", "bool", "complex", "quantized", "bits", "block"]


@dataclass(frozen=True, slots=True)
class DType:
    """One element type: its names, its width, and how it is stored."""

    name: str
    category: Category
    bits: float
    """Bits per value (``float32``: 32, ``int4``: 4, ``float4_e2m1fn_x2``: 4 per packed value); for block formats the
    average, scales included (GGUF's Q4_0: 32 values in 18 bytes, 4.5 bits)."""
    block_elements: int = 1
    """Elements in one storage block."""
    block_bytes: int = 0
    """Bytes of one storage block; 0 means ``bits / 8`` (one element per whole number of bytes)."""
    aliases: tuple[str, ...] = ()
    values_per_element: int = 1
    """Values one element holds (``float4_e2m1fn_x2``: 2, ``bits1x8``: 8); 1 for almost every type."""
    description: str = ""

    @property
    def storage_block_bytes(self) -> int:
        return self.block_bytes or int(self.bits) // 8

    def packed_nbytes(self, values: int) -> int:
        """Bytes that ``values`` values take packed at ``bits`` each, as a conversion to this type costs.

        >>> lookup("int4").packed_nbytes(9), lookup("bfloat16").packed_nbytes(9)
        (5, 18)
        """
        if self.category == "block":
            return self.nbytes(values)
        return -(-values * int(self.bits) // 8)

    def nbytes(self, numel: int) -> int:
        """Bytes that ``numel`` elements of this type occupy in storage.

        >>> lookup("bfloat16").nbytes(10), lookup("quint4x2").nbytes(11)
        (20, 6)
        """
        blocks = -(-numel // self.block_elements)
        return blocks * self.storage_block_bytes


def _plain(name: str, category: Category, bits: int, *aliases: str, description: str = "") -> DType:
    return DType(name, category, bits, aliases=aliases, description=description)


def _block(name: str, values: int, size: int, description: str) -> DType:
    # GGML's block-quantised formats: `values` values (with their scales) in `size` bytes.
    return DType(name, "block", size * 8 / values, block_elements=values, block_bytes=size, description=description)


def _one_byte_container(name: str, category: Category, bits: int, *aliases: str) -> DType:
    # torch's sub-byte "shell" dtypes (uint1..uint7, int1..int7) have no packed storage of their own: a plain tensor
    # spends one byte per element; packing is left to tensor subclasses such as torchao's.
    return DType(
        name,
        category,
        bits,
        block_bytes=1,
        aliases=aliases,
        description=f"{bits}-bit values, one per byte in a plain torch tensor",
    )


DTYPES: tuple[DType, ...] = (
    _plain("float64", "float", 64, "double", "fp64", "f64"),
    _plain("float32", "float", 32, "float", "fp32", "f32"),
    _plain("float16", "float", 16, "half", "fp16", "f16"),
    _plain("bfloat16", "float", 16, "bf16"),
    _plain("float8_e4m3fn", "float", 8, "fp8", "fp8_e4m3", "e4m3", "f8_e4m3", "fp8_e4m3fn", "f8_e4m3fn"),
    _plain("float8_e4m3fnuz", "float", 8, "fp8_e4m3fnuz", "f8_e4m3fnuz"),
    _plain("float8_e5m2", "float", 8, "fp8_e5m2", "e5m2", "f8_e5m2"),
    _plain("float8_e5m2fnuz", "float", 8, "fp8_e5m2fnuz", "f8_e5m2fnuz"),
    _plain(
        "float8_e8m0fnu",
        "float",
        8,
        "fp8_e8m0",
        "e8m0",
        "f8_e8m0",
        "fp8_e8m0fnu",
        "f8_e8m0fnu",
        description="exponent-only scale type",
    ),
    DType(
        "float4_e2m1fn_x2",
        "float",
        4,
        block_bytes=1,
        values_per_element=2,
        aliases=("fp4_x2",),
        description="two float4 (e2m1) values per element",
    ),
    # Sub-byte floats as safetensors stores them: values packed with no padding between them.
    DType("float4_e2m1fn", "float", 4, block_elements=2, block_bytes=1, aliases=("f4", "fp4"), description="MX fp4"),
    DType("float6_e2m3fn", "float", 6, block_elements=4, block_bytes=3, aliases=("f6_e2m3",), description="MX fp6"),
    DType("float6_e3m2fn", "float", 6, block_elements=4, block_bytes=3, aliases=("f6_e3m2",), description="MX fp6"),
    DType("nf4", "float", 4, block_elements=2, block_bytes=1, description="bitsandbytes NormalFloat4, two per byte"),
    _plain("complex128", "complex", 128, "cdouble", "c128"),
    _plain("complex64", "complex", 64, "cfloat", "c64"),
    _plain("complex32", "complex", 32, "chalf", "c32"),
    _plain("int64", "int", 64, "long", "i64"),
    _plain("int32", "int", 32, "int", "i32"),
    _plain("int16", "int", 16, "short", "i16"),
    _plain("int8", "int", 8, "i8"),
    _plain("uint64", "uint", 64, "u64"),
    _plain("uint32", "uint", 32, "u32"),
    _plain("uint16", "uint", 16, "u16"),
    _plain("uint8", "uint", 8, "u8"),
    DType("bool", "bool", 8, aliases=("b8",), description="one byte per value"),
    *(_one_byte_container(f"int{b}", "int", b, f"i{b}") for b in range(1, 8)),
    _one_byte_container("uint1", "uint", 1, "bit", "u1"),
    *(_one_byte_container(f"uint{b}", "uint", b, f"u{b}") for b in range(2, 8)),
    _plain("qint8", "quantized", 8, description="torch quantized int8"),
    _plain("quint8", "quantized", 8, description="torch quantized uint8"),
    _plain("qint32", "quantized", 32, description="torch quantized int32"),
    DType("quint4x2", "quantized", 4, block_elements=2, block_bytes=1, description="two 4-bit values per byte"),
    DType("quint2x4", "quantized", 2, block_elements=4, block_bytes=1, description="four 2-bit values per byte"),
    _plain("bits8", "bits", 8, description="8 raw bits"),
    _plain("bits16", "bits", 16, description="16 raw bits"),
    DType("bits1x8", "bits", 1, block_bytes=1, values_per_element=8, description="eight 1-bit values per element"),
    DType("bits2x4", "bits", 2, block_bytes=1, values_per_element=4, description="four 2-bit values per element"),
    DType("bits4x2", "bits", 4, block_bytes=1, values_per_element=2, description="two 4-bit values per element"),
    # GGML/GGUF block formats (llama.cpp); the 1-value types F32, F16, BF16, I8… are the entries above.
    _block("Q4_0", 32, 18, "4-bit, one fp16 scale per 32 values"),
    _block("Q4_1", 32, 20, "4-bit, fp16 scale and minimum per 32 values"),
    _block("Q5_0", 32, 22, "5-bit, one fp16 scale per 32 values"),
    _block("Q5_1", 32, 24, "5-bit, fp16 scale and minimum per 32 values"),
    _block("Q8_0", 32, 34, "8-bit, one fp16 scale per 32 values"),
    _block("Q8_1", 32, 40, "8-bit, scale and sum per 32 values"),
    _block("Q2_K", 256, 84, "k-quant, 2-bit super-blocks of 256"),
    _block("Q3_K", 256, 110, "k-quant, 3-bit super-blocks of 256"),
    _block("Q4_K", 256, 144, "k-quant, 4-bit super-blocks of 256"),
    _block("Q5_K", 256, 176, "k-quant, 5-bit super-blocks of 256"),
    _block("Q6_K", 256, 210, "k-quant, 6-bit super-blocks of 256"),
    _block("Q8_K", 256, 292, "k-quant, 8-bit super-blocks of 256"),
    _block("IQ1_S", 256, 50, "i-quant, ~1.56 bits"),
    _block("IQ1_M", 256, 56, "i-quant, ~1.75 bits"),
    _block("IQ2_XXS", 256, 66, "i-quant, ~2.06 bits"),
    _block("IQ2_XS", 256, 74, "i-quant, ~2.31 bits"),
    _block("IQ2_S", 256, 82, "i-quant, ~2.56 bits"),
    _block("IQ3_XXS", 256, 98, "i-quant, ~3.06 bits"),
    _block("IQ3_S", 256, 110, "i-quant, ~3.44 bits"),
    _block("IQ4_NL", 32, 18, "i-quant, non-linear 4-bit"),
    _block("IQ4_XS", 256, 136, "i-quant, ~4.25 bits"),
    _block("TQ1_0", 256, 54, "ternary, ~1.69 bits"),
    _block("TQ2_0", 256, 66, "ternary, 2.06 bits"),
    _block("MXFP4", 32, 17, "OCP microscaling fp4, one e8m0 scale per 32 values"),
    _block("NVFP4", 64, 36, "NVIDIA fp4, fp8 scales per 16 values"),
    _block("Q1_0", 128, 18, "1-bit, one fp16 scale per 128 values"),
)


COMMON: tuple[str, ...] = ("float32", "float16", "bfloat16", "float8_e4m3fn", "int8", "int4")
"""The types a model is commonly stored or served in, for "what would it weigh in …" tables."""


def _index(table: tuple[DType, ...]) -> dict[str, DType]:
    index: dict[str, DType] = {}
    for dtype in table:
        for key in (dtype.name, *dtype.aliases):
            if key.lower() in index:
                raise ValueError(f"dtype name {key!r} is used twice in the dtype table")
            index[key.lower()] = dtype
    return index


_BY_NAME = _index(DTYPES)


def lookup(name: str) -> DType:
    """The table entry for a dtype name or alias, case-insensitive; ``torch.`` prefixes are accepted.

    >>> lookup("bf16").name, lookup("torch.float32").bits
    ('bfloat16', 32)
    """
    key = name.lower().removeprefix("torch.")
    try:
        return _BY_NAME[key]
    except KeyError:
        raise UsageError(f"unknown dtype {name!r}; `paramscope dtypes` lists the known names") from None


def find(name: str) -> DType | None:
    """Like :func:`lookup`, but ``None`` for a name the table does not know."""
    return _BY_NAME.get(name.lower().removeprefix("torch."))


def iter_dtypes() -> Iterator[DType]:
    """Every entry of the table, in table order."""
    return iter(DTYPES)
