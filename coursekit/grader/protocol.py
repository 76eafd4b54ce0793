"""The grading protocol, in one place: the task schema on the wire, the data format, calling one
case and judging one answer, with structured outcomes (exercises part).

``python -m coursekit assign`` (public checks), :func:`coursekit.grader.check` (feedback in the
notebook) and ``python -m coursekit grade`` (the sandboxed grader) are thin front ends over it,
the way torchmetrics' metrics share one ``_update``/``_compute``:

* :func:`task_spec` / :func:`public_spec`: what a task looks like when it leaves the trusted side
  (the sandbox gets the calls without answers; the public JSON gets the public answers);
* :func:`encode` / :func:`decode`: plain data (numbers, strings, lists, dicts, numeric arrays),
  never behaviour; :func:`loads` parses JSON that came back from student code with its size
  capped before parsing, its nesting after, and refuses non-finite numbers and huge integers;
* :func:`call_case`: make one call (inputs to torch, the driver, the differentiability check) and
  return a record, ``{"output": ...}`` or ``{"code": REASON, "error": text}``;
* :func:`judge`: turn one record and the expected answer into an :class:`Outcome` whose
  ``code`` is one of :data:`REASONS` (never a sentence to match).

This module imports nothing heavy at import time, so the sandbox's worker can import it cheaply.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass

__all__ = ["REASONS", "Outcome", "EncodeError", "HostileData", "encode", "decode", "loads",
           "task_spec", "public_spec", "call_case", "judge", "judge_artefact", "compare",
           "describe_call", "describe_case", "describe_value", "Shown", "MAX_DEPTH",
           "MAX_RECORD_BYTES"]

# ------------------------------------------------------------------------------ reason codes
REASONS = {
    "passed": "the answer matches",
    "wrong_value": "numbers differ from the expected ones",
    "wrong_shape": "the answer has another shape or length",
    "wrong_type": "the answer is of another kind (number, string, dict, ...)",
    "non_finite": "NaN or infinity where a finite value was expected",
    "not_differentiable": "the answer must be a torch tensor that carries a gradient",
    "not_plain_data": "the answer is not plain data",
    "unreadable": "the answer that came back could not be read (too large, malformed)",
    "raised": "the function raised an exception",
    "not_attempted": "the function still raises NotImplementedError",
    "exited": "the function called sys.exit()",
    "killed": "the call ended its process (a crash, a signal, out of memory)",
    "timeout": "the call ran past its time limit",
    "not_reached": "the trained artefact, measured by the grader, does not reach the bar",
    "no_answer": "no answer came back",
}

_ARRAY, _TUPLE, _FLOAT = "__ndarray__", "__tuple__", "__float__"
# dtypes an answer may carry: numbers and booleans, never objects
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"}
MAX_DEPTH = 20                  # nesting of lists and dicts in one value
MAX_RECORD_BYTES = 8 * 2**20    # one record (an answer) as JSON text
MAX_INT_DIGITS = 30             # a larger integer in returned JSON is refused (10**400 crashed)


class EncodeError(TypeError):
    """A value that is not plain data (numbers, strings, lists, dicts, numeric arrays)."""


class HostileData(ValueError):
    """Data that came back from student code and is refused before or while parsing it."""


@dataclass(frozen=True)
class Outcome:
    """The judgement of one case: a reason code and, for public cases, a sentence."""

    code: str            # a key of REASONS
    message: str = ""    # details for the student (public cases only; hidden: empty)

    @property
    def passed(self) -> bool:
        return self.code == "passed"


# ---------------------------------------------------------------------------- the data format

def encode(value, _depth: int = 0):
    """Turn plain data into JSON-ready values; arrays and tensors become tagged dicts.

    Only exact built-in types are accepted (a subclass of ``float`` with a forged ``__eq__`` is
    refused), so what crosses a process boundary is data, never behaviour. A numpy or torch
    scalar becomes a plain number, so a list of them is a list of numbers.

    Example:
        >>> import numpy as np
        >>> decode(json.loads(json.dumps(encode({"a": (1, 2.5), "x": np.arange(3)}))))["a"]
        (1, 2.5)
        >>> encode([np.float32(1.5), np.int64(2)])
        [1.5, 2]
    """
    if _depth > MAX_DEPTH:
        raise EncodeError("the value is nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:  # JSON has no NaN or infinity: spell them out
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if kind in (list, tuple):
        items = [encode(v, _depth + 1) for v in value]
        return {_TUPLE: items} if kind is tuple else items
    if kind is dict:
        if not all(type(k) is str for k in value):
            raise EncodeError("dictionary keys must be strings")
        return {k: encode(v, _depth + 1) for k, v in value.items()}
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("torch") and kind.__name__ in ("Tensor", "Parameter"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
        kind, module = type(value), "numpy"
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.generic) and value.dtype.name in _DTYPES:
            return encode(value.item(), _depth)  # a scalar is a number, not a (1,) array
        if kind is np.ndarray:
            if value.dtype.name not in _DTYPES:
                raise EncodeError(f"arrays of dtype {value.dtype} cannot be graded")
            array = np.array(value, order="C", copy=True)  # keeps 0-d arrays 0-d
            return {_ARRAY: base64.b64encode(array.tobytes()).decode("ascii"),
                    "dtype": array.dtype.name, "shape": list(array.shape)}
    raise EncodeError(f"a value of type {kind.__module__}.{kind.__qualname__} is not plain data "
                      "(return numbers, lists, dicts, numpy arrays or torch tensors)")


def decode(value, _depth: int = 0):
    """The inverse of :func:`encode`: rebuild numbers, tuples and numpy arrays from JSON values.

    Raises:
        ValueError: a forged or malformed value (wrong dtype, shape, nesting).
    """
    if _depth > MAX_DEPTH:
        raise ValueError("the value is nested too deeply")
    if isinstance(value, list):
        return [decode(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        if _ARRAY in value:
            import numpy as np

            dtype, shape, data = value.get("dtype"), value.get("shape"), value.get(_ARRAY)
            if dtype not in _DTYPES or not isinstance(shape, list) or len(shape) > 32 or not all(
                    type(n) is int and 0 <= n <= 2**31 for n in shape) or not isinstance(data,
                                                                                        str):
                raise ValueError(f"malformed array: dtype {str(dtype)[:20]!r}, shape "
                                 f"{str(shape)[:60]}")
            count = math.prod(shape)
            if count * np.dtype(dtype).itemsize != len(data) // 4 * 3 - data[-2:].count("="):
                raise ValueError(f"array data does not hold {count} values of {dtype}")
            array = np.frombuffer(base64.b64decode(data, validate=True), dtype=np.dtype(dtype))
            return array.reshape(shape).copy()
        if _TUPLE in value:
            items = value[_TUPLE]
            if not isinstance(items, list):
                raise ValueError("malformed tuple")
            return tuple(decode(v, _depth + 1) for v in items)
        if _FLOAT in value:
            if value[_FLOAT] not in ("nan", "inf", "-inf"):
                raise ValueError("malformed non-finite number")
            return float(value[_FLOAT])
        return {str(k): decode(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a non-finite number outside its tagged form")
    return value


def _depth_of(value) -> int:
    """The deepest nesting of lists and dicts in a parsed JSON value (iterative: no recursion)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (list, dict)):
            depth += 1
            deepest = max(deepest, depth)
            todo.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _refuse_constant(name: str):
    raise HostileData(f"a bare {name} in returned JSON")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise HostileData(f"an integer of {len(text)} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise HostileData(f"a number that overflows to infinity ({text[:20]})")
    return value


def loads(data: bytes | str, max_bytes: int = MAX_RECORD_BYTES, max_depth: int = MAX_DEPTH + 4):
    """Parse JSON that came back from student code, refusing what could hurt the grader.

    The size is checked before parsing; the parser is the standard library's (C, linear in the
    size: a regular expression over hostile text was quadratic); a nesting deeper than the
    interpreter allows is caught, the nesting of what parsed is measured after; bare
    ``NaN``/``Infinity``, numbers that overflow and integers of more than ``MAX_INT_DIGITS``
    digits are refused.

    Raises:
        HostileData: with what was refused.

    Example:
        >>> loads(b'{"output": [1, 2.5]}')
        {'output': [1, 2.5]}
        >>> loads(b'{"output": 1' + b'0' * 400 + b'}')
        Traceback (most recent call last):
        ...
        coursekit.grader.protocol.HostileData: an integer of 401 digits
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if len(data) > max_bytes:
        raise HostileData(f"{len(data)} bytes, more than the {max_bytes} allowed")
    try:
        value = json.loads(data.decode("utf-8", "replace"), parse_constant=_refuse_constant,
                           parse_int=_parse_int, parse_float=_parse_float)
    except HostileData:
        raise
    except RecursionError:
        raise HostileData(f"nested more than {max_depth} levels deep") from None
    except ValueError as error:
        raise HostileData(f"not valid JSON ({str(error)[:80]})") from None
    if _depth_of(value) > max_depth:
        raise HostileData(f"nested more than {max_depth} levels deep")
    return value


# ------------------------------------------------------------------------------ task schema

def task_spec(task) -> dict:
    """What the sandboxed process needs to make a task's calls (``Task.to_wire()``): no
    expected answers, no judge and none of a case's ``held_out`` inputs (they stay in the
    grader)."""
    return task.to_wire()


def public_spec(task, expected: list) -> dict:
    """A task's public cases with the reference answers ``expected`` (one per public case):
    ``Task.to_wire(expected)``."""
    return task.to_wire(expected)


# ------------------------------------------------------------------------------ one call

def _to_torch(value, grad: bool = False):
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(value.copy())
        if grad and tensor.is_floating_point():
            tensor.requires_grad_(True)
        return tensor
    if isinstance(value, list):
        return [_to_torch(v, grad) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_torch(v, grad) for v in value)
    if isinstance(value, dict):
        return {k: _to_torch(v, grad) for k, v in value.items()}
    return value


def _leaves(value) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value] if value.requires_grad else []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _leaves(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _leaves(v)]
    return []


def _differentiable_problem(answer, leaves) -> str | None:
    """Why ``answer`` is not a tensor whose gradient reaches the inputs ``leaves`` (or None)."""
    import torch

    kind = type(answer).__name__
    if not isinstance(answer, torch.Tensor):
        return (f"the answer must be a torch tensor that carries a gradient, got a {kind} "
                "(.item(), float() and numpy break the graph: keep it a tensor)")
    if not answer.requires_grad or not answer.is_floating_point():
        return ("the answer is a tensor without a gradient (.detach(), torch.no_grad() or "
                "building a new tensor from values cuts it off the inputs)")
    if leaves:
        grads = torch.autograd.grad(answer.float().sum(), leaves, allow_unused=True)
        if all(g is None for g in grads):
            return ("the answer carries a gradient, but not from the inputs (a new leaf "
                    "tensor with requires_grad=True is not the computation)")
    return None


def call_case(function, spec: dict, case: dict) -> dict:
    """Call ``function`` on one case of task ``spec`` (:func:`task_spec`'s dict); a record back.

    Returns ``{"output": encoded answer}`` or ``{"code": reason, "error": text}``; the error text
    is the student's own exception, shown only for public cases.
    """
    import traceback

    try:
        args, kwargs = decode(case["args"]), decode(case["kwargs"])
        grad = bool(spec.get("differentiable"))
        if spec.get("torch") or grad:
            args, kwargs = _to_torch(args, grad), _to_torch(kwargs, grad)
        if spec.get("driver"):
            from coursekit.grader import drivers

            answer = getattr(drivers, spec["driver"])(function, *args, **kwargs)
        else:
            answer = function(*args, **kwargs)
        if grad:
            problem = _differentiable_problem(answer, _leaves((args, kwargs)))
            if problem:
                return {"code": "not_differentiable", "error": problem}
        return {"output": encode(answer)}
    except NotImplementedError:
        return {"code": "not_attempted",
                "error": "not attempted (the function still raises NotImplementedError)"}
    except SystemExit:
        return {"code": "exited", "error": "called sys.exit() instead of returning"}
    except EncodeError as error:
        return {"code": "not_plain_data", "error": str(error)}
    except BaseException as error:  # noqa: BLE001 - the student's error is feedback
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return {"code": "raised", "error": text[-500:]}


# ------------------------------------------------------------------------------ one judgement

def _describe(value) -> str:
    import numpy as np

    if isinstance(value, np.ndarray):
        return f"an array of shape {tuple(value.shape)} ({value.dtype})"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{type(value).__name__} {value!r}"[:80]


def _short(value) -> str:
    import numpy as np

    value = np.asarray(value)
    if value.size == 1:
        number = value.item()
        return f"{number:.6g}" if isinstance(number, float) else repr(number)
    return np.array2string(value, precision=4, threshold=8)


def _numeric(value) -> bool:
    import numpy as np

    if isinstance(value, bool) or isinstance(value, (float, np.number, np.bool_)):
        return True
    if isinstance(value, int):
        return abs(value) < 2**63
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, (list, tuple)) and value:
        try:
            return np.asarray(value).dtype.kind in "biuf"
        except (ValueError, TypeError, OverflowError):
            return False
    return False


def _compare(expected, got, rtol, atol, reveal, where) -> tuple[str, str] | None:
    """``None`` when ``got`` matches, else ``(reason code, sentence)``."""
    import numpy as np

    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return "wrong_type", f"{where} should be a dict with keys {sorted(expected)}, got " \
                f"{_describe(got)}"
        if set(got) != set(expected):
            return "wrong_shape", f"{where} has keys {sorted(got)[:20]}, expected " \
                f"{sorted(expected)}"
        for key in expected:
            found = _compare(expected[key], got[key], rtol, atol, reveal, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, str):
        if not isinstance(got, str) or got != expected:
            return "wrong_value", f"{where} is {_describe(got)}" + (
                f", expected {expected!r}" if reveal else "")
        return None
    if isinstance(expected, (list, tuple)) and not _numeric(expected):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return "wrong_shape", f"{where} should be a sequence of length {len(expected)}, " \
                f"got {_describe(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            found = _compare(e, g, rtol, atol, reveal, f"{where}[{i}]")
            if found:
                return found
        return None
    # numbers and arrays
    if not _numeric(got):
        return "wrong_type", f"{where} should be numeric, got {_describe(got)}"
    e, g = np.asarray(expected), np.asarray(got)
    if e.shape != g.shape:
        if e.size == 1 and g.size == 1:
            g = g.reshape(e.shape)
        else:
            return "wrong_shape", f"{where} has shape {tuple(g.shape)}, expected shape " \
                f"{tuple(e.shape)}"
    if e.dtype == bool or g.dtype == bool:
        if e.dtype != g.dtype or not np.array_equal(e, g):
            return "wrong_value", f"{where} is {_short(g)}" + (
                f", expected {_short(e)}" if reveal else " (booleans differ)")
        return None
    e, g = e.astype(np.float64), g.astype(np.float64)
    bad = ~np.isfinite(g) & np.isfinite(e)
    if bad.any():
        return "non_finite", (
            f"{where} is NaN or infinite where {_short(e[bad].ravel()[0])} was expected"
            if reveal else f"{where} holds NaN or infinite values where finite ones were expected")
    if not np.array_equal(np.isnan(e), np.isnan(g)) or not np.array_equal(
            np.isinf(e) & (e > 0), np.isinf(g) & (g > 0)):
        return "wrong_value", f"{where} is finite where the expected value is not"
    finite = np.isfinite(e)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.where(finite, np.abs(g - e), 0.0)
    wrong = finite & (error > atol + rtol * np.abs(e))
    if wrong.any():
        index = np.unravel_index(int(np.argmax(np.where(wrong, error, -1))), e.shape)
        at = f" at index {tuple(int(i) for i in index)}" if e.ndim else ""
        detail = f": got {_short(g[index])}, expected {_short(e[index])}" if reveal else ""
        return "wrong_value", f"{where} is wrong{at}{detail}; {int(wrong.sum())} of {e.size} " \
            "values differ"
    return None


def compare(expected, got, rtol: float = 1e-4, atol: float = 1e-5, *, reveal: bool = True,
            where: str = "the answer") -> str | None:
    """``None`` when ``got`` matches ``expected`` (plain data), else a sentence saying how not.

    Numbers and arrays must have the expected shape, hold no NaN or infinity where the
    expected value is finite, and agree within ``|got - expected| <= atol + rtol * |expected|``.
    Strings, booleans and dictionary keys must be equal. ``reveal`` adds the expected values
    (public cases only).

    Example:
        >>> import numpy as np
        >>> compare(np.array([1.0, 2.0]), [1.0, 2.0]) is None
        True
        >>> compare(1.0, float("nan"))
        'the answer is NaN or infinite where 1 was expected'
    """
    found = _compare(expected, got, rtol, atol, reveal, where)
    return found[1] if found else None


def judge(expected, record, *, rtol: float = 1e-4, atol: float = 1e-5,
          public: bool = True, names: dict | None = None) -> Outcome:
    """Judge one record (from :func:`call_case`, possibly forged) against the expected answer.

    Hidden cases (``public=False``) get an :class:`Outcome` without a message: the student sees
    pass or fail and the task's hint, never the answer, the size of the error or the inputs.
    ``names`` renames parts of a driver's answer in the message (``"the answer['grads'][0]"`` to
    what the student's code produced, see :func:`coursekit.grader.drivers.answer_names`).

    Example:
        >>> judge(2.0, {"output": 2.0}).code
        'passed'
        >>> judge(2.0, {"output": 3.0}, public=False)
        Outcome(code='wrong_value', message='')
        >>> judge({"loss": 2.0}, {"output": {"loss": 3.0}},
        ...       names={"the answer['loss']": "the loss f returned"}).message
        'the loss f returned is wrong: got 3, expected 2; 1 of 1 values differ'
    """
    def out(code, message):
        return Outcome(code, message if public else "")

    got, failed = _answer(record, out)
    if failed is not None:
        return failed
    try:
        found = _compare(expected, got, rtol, atol, public, "the answer")
    except (ValueError, TypeError, OverflowError) as error:
        return out("unreadable", f"the answer could not be compared ({_one_line(error)})")
    if not found:
        return Outcome("passed")
    code, message = found
    for raw in sorted(names or {}, key=len, reverse=True):  # the longest part that matches
        if message.startswith(raw):
            message = names[raw] + message[len(raw):]
            break
    return out(code, message)


def judge_artefact(name: str, held_out: dict, record, *, public: bool = True) -> Outcome:
    """Judge a training task's record: decode the artefact (hostile plain data) and measure it
    with judge ``name`` of :mod:`coursekit.grader.judges` in this process, on ``held_out``.

    Example:
        >>> judge_artefact("generator_w1", {"seed": 0, "limit": 0.4}, {"output": [1, 2]}).code
        'wrong_shape'
    """
    from coursekit.grader.judges import judge_artefact as measure

    def out(code, message):
        return Outcome(code, message if public else "")

    artefact, failed = _answer(record, out)
    if failed is not None:
        return failed
    verdict = measure(name, artefact, held_out)
    if verdict.passed:
        return Outcome("passed")
    return out("wrong_shape" if verdict.malformed else "not_reached", verdict.message)


def _answer(record, out) -> tuple[object, Outcome | None]:
    """The decoded answer of a record from the sandbox, or the :class:`Outcome` that says why
    there is none (no record, the case's own failure code, or an answer that cannot be read)."""
    if not isinstance(record, dict):
        return None, out("no_answer", "no answer came back")
    if "output" not in record:
        code = record.get("code")
        code = code if code in REASONS and code != "passed" else "no_answer"
        return None, out(code, _one_line(record.get("error")) or REASONS[code])
    try:
        return decode(record["output"]), None
    except (ValueError, TypeError) as error:
        return None, out("unreadable", f"the answer could not be read ({_one_line(error)})")


def _one_line(text, limit: int = 300) -> str:
    """Student text made safe for a report: one line, no control characters, bounded."""
    if text is None:
        return ""
    text = str(text)[-4 * limit:]
    text = "".join(c if c.isprintable() else " " for c in text.replace("\n", " | "))
    return text[-limit:].strip()


class Shown(str):
    """Text that :func:`describe_call` shows as it is (a description, not a string value)."""

    def __repr__(self) -> str:
        return str(self)


def describe_value(value, kind: str = "array") -> str:
    """One argument as the student should read it: an array of more than 12 numbers, or a list
    of more than 12 items, by its shape, dtype and range; ``kind`` names an array
    (``"tensor"`` for what a driver hands over as a torch tensor).

    Example:
        >>> import numpy as np
        >>> describe_value(np.arange(64.0).reshape(8, 8), "tensor")
        'tensor(shape=(8, 8), dtype=float64, values 0 to 63)'
        >>> describe_value([1, 2])
        '[1, 2]'
    """
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.size > 12:
            span = (f", values {value.min():.4g} to {value.max():.4g}"
                    if np.issubdtype(value.dtype, np.number) and value.size else "")
            return f"{kind}(shape={value.shape}, dtype={value.dtype}{span})"
        return np.array2string(value, precision=4, threshold=12, separator=", ",
                               prefix=f"{kind}(").join((f"{kind}(", ")"))
    if isinstance(value, (list, tuple)) and len(value) > 12:
        return f"a {type(value).__name__} of {len(value)} items"
    return repr(value)


def describe_call(function: str, args, kwargs, limit: int = 400) -> str:
    """``f(array(shape=(2, 3)), 5, scale=0.5)``: a public case's call, for its feedback.

    An array of more than 12 numbers, or a list of more than 12 items, is summarised by its shape
    (and an array by its range): the student needs to know what the function received, not
    every number of it (:func:`describe_value`).

    Example:
        >>> import numpy as np
        >>> describe_call("f", (np.zeros((2, 3)), 5), {"scale": 0.5})
        'f(array([[0., 0., 0.],\\n       [0., 0., 0.]]), 5, scale=0.5)'
        >>> describe_call("g", (np.arange(64.0).reshape(8, 8), list(range(20))), {})
        'g(array(shape=(8, 8), dtype=float64, values 0 to 63), a list of 20 items)'
    """
    parts = ([describe_value(a) for a in args]
             + [f"{k}={describe_value(v)}" for k, v in kwargs.items()])
    text = f"{function}({', '.join(parts)})"
    return text if len(text) <= limit else text[:limit - 5] + " ...)"


def describe_case(function: str, driver: str | None, args, kwargs) -> str:
    """The call the student's ``function`` received in a case: through its ``driver`` (modules
    and tensors, :func:`coursekit.grader.drivers.student_call`) when the task has one, else the
    case's own arguments (:func:`describe_call`).

    Example:
        >>> describe_case("f", None, (1,), {})
        'f(1)'
        >>> describe_case("train_gan", "generator_net", (2000, 0), {})
        'train_gan(data=(2000, 1) float32 tensor, half near -2 and half near 2 (standard deviation 0.3), seed=0)'
    """
    if driver:
        from coursekit.grader.drivers import student_call

        return student_call(driver, function, args, kwargs)
    return describe_call(function, args, kwargs)
