"""The AlarmRule language of CloudWatch composite alarms: parse it, list the alarms it names, evaluate it.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks); cloudwatch.py uses it to validate
``PutCompositeAlarm``, to refuse deleting alarms a composite alarm depends
on, and to compute composite alarm states.

The language, from the PutCompositeAlarm API reference: ``ALARM(name)``,
``OK(name)`` and ``INSUFFICIENT_DATA(name)`` are true when the named alarm
(a name or an ARN, optionally in double quotes) is in that state; ``TRUE``
and ``FALSE`` are constants; ``NOT``, ``AND``, ``OR`` and parentheses
combine them, NOT binding tightest and OR loosest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STATES = ("ALARM", "OK", "INSUFFICIENT_DATA")


class AlarmRuleError(ValueError):
    """A rule that does not parse; the message reads like CloudWatch's."""


@dataclass(frozen=True)
class StateIs:
    """``ALARM(name)``, ``OK(name)`` or ``INSUFFICIENT_DATA(name)``."""

    state: str
    alarm: str


@dataclass(frozen=True)
class Constant:
    """``TRUE`` or ``FALSE``."""

    value: bool


@dataclass(frozen=True)
class Not:
    """``NOT operand``."""

    operand: Expr


@dataclass(frozen=True)
class Junction:
    """``a AND b AND ...`` or ``a OR b OR ...``."""

    operator: str
    operands: tuple[Expr, ...]


Expr = StateIs | Constant | Not | Junction


def parse(rule: str) -> Expr:
    """Parse ``rule``; raises AlarmRuleError when it is not a valid AlarmRule."""
    return _Parser(rule).parse()


def alarm_names(expr: Expr) -> list[str]:
    """The alarms ``expr`` refers to (names or ARNs as written), each once, in order."""
    names: list[str] = []

    def visit(node: Expr) -> None:
        if isinstance(node, StateIs):
            if node.alarm not in names:
                names.append(node.alarm)
        elif isinstance(node, Not):
            visit(node.operand)
        elif isinstance(node, Junction):
            for operand in node.operands:
                visit(operand)

    visit(expr)
    return names


def evaluate(expr: Expr, state_of: Callable[[str], str | None]) -> bool:
    """Whether ``expr`` holds, given each named alarm's state (None: no such alarm)."""
    if isinstance(expr, StateIs):
        return state_of(expr.alarm) == expr.state
    if isinstance(expr, Constant):
        return expr.value
    if isinstance(expr, Not):
        return not evaluate(expr.operand, state_of)
    results = (evaluate(operand, state_of) for operand in expr.operands)
    return all(results) if expr.operator == "AND" else any(results)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Expr:
        expr = self._or()
        self._skip_spaces()
        if self.pos < len(self.text):
            raise self._unexpected()
        return expr

    def _or(self) -> Expr:
        return self._chain("OR", self._and)

    def _and(self) -> Expr:
        return self._chain("AND", self._unary)

    def _chain(self, operator: str, operand: Callable[[], Expr]) -> Expr:
        operands = [operand()]
        while self._keyword(operator):
            operands.append(operand())
        return operands[0] if len(operands) == 1 else Junction(operator, tuple(operands))

    def _unary(self) -> Expr:
        if self._keyword("NOT"):
            return Not(self._unary())
        self._skip_spaces()
        if self._at("("):
            self.pos += 1
            expr = self._or()
            self._expect(")")
            return expr
        if self._keyword("TRUE"):
            return Constant(True)
        if self._keyword("FALSE"):
            return Constant(False)
        for state in STATES:
            if self._keyword(state):
                self._expect("(")
                alarm = self._alarm_name()
                self._expect(")")
                return StateIs(state, alarm)
        raise self._unexpected()

    def _alarm_name(self) -> str:
        self._skip_spaces()
        if self._at('"'):
            end = self.text.find('"', self.pos + 1)
            if end < 0:
                raise AlarmRuleError(f"Error in AlarmRule [Unterminated quoted alarm name at char {self.pos}]")
            name, self.pos = self.text[self.pos + 1 : end], end + 1
        else:
            end = self.text.find(")", self.pos)
            if end < 0:
                end = len(self.text)
            name, self.pos = self.text[self.pos : end].strip(), end
        if not name:
            raise self._unexpected()
        return name

    def _keyword(self, word: str) -> bool:
        self._skip_spaces()
        end = self.pos + len(word)
        if not self.text.startswith(word, self.pos):
            return False
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] == "_"):
            return False
        self.pos = end
        return True

    def _expect(self, char: str) -> None:
        self._skip_spaces()
        if not self._at(char):
            raise self._unexpected()
        self.pos += 1

    def _at(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def _skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _unexpected(self) -> AlarmRuleError:
        if self.pos >= len(self.text):
            return AlarmRuleError(f"Error in AlarmRule [Unexpected end of rule at char {self.pos}]")
        return AlarmRuleError(f"Error in AlarmRule [Unsupported token '{self.text[self.pos]}' at char {self.pos}]")
