#!/usr/bin/env python3
# ci: --check
"""golden/gen/answer.py — the answer component's golden cases, written by hand.

Every expected result below was decided by a person from the rules of
include/r1lab/answer.h (and docs/answer.md), never computed by r1lab's C code:
this script only serializes the hand-written tables to JSONL (sorted keys, one
case a line) and updates golden/MANIFEST. The long R1-style outputs are built
from fixed paragraphs around a hand-chosen answer.

  python3 golden/gen/answer.py          writes golden/answer/*.jsonl
  python3 golden/gen/answer.py --check  compares byte for byte, exit 1 on a difference

Files:
  equal.jsonl      {"gold", "pred", "equal", "reason"}
  extract.jsonl    {"text", "found", "answer", "truncated", "reason"}
  normalize.jsonl  {"input", "normalized", "reason"}
  check.jsonl      {"response", "gold", "gold_format", "found", "truncated", "correct", "reason"}
"""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest  # noqa: E402

T, F = True, False

# (gold, pred, equal, reason)
EQUAL = [
    # integers and rationals: exact
    ("72", "72", T, "identical integers"),
    ("99999", "100000", F, "integers compare exactly (Qwen's relative tolerance calls these equal)"),
    ("100000", "99999", F, "integers compare exactly, either order"),
    ("007", "7", T, "leading zeros"),
    ("7", "007", T, "leading zeros, pred side"),
    ("-0", "0", T, "negative zero is zero"),
    ("-5", "5", F, "sign matters"),
    ("5", "-5", F, "sign matters, other way"),
    ("12000", "12,000", T, "thousands separator"),
    ("1600", "1{,}600", T, "LaTeX thousands separator {,}"),
    ("1600", "1\\,600", T, "thin space as thousands separator"),
    ("1234567", "1,234,567", T, "several thousands groups"),
    ("12, 18", "12,18", T, "a list, with and without the space"),
    ("12,18", "18, 12", T, "lists are unordered"),
    ("1200", "12, 00", F, "'12, 00' is a list of two, not 1200"),
    ("\\frac{1}{2}", "0.5", T, "fraction vs decimal within tolerance"),
    ("\\frac38", "0.375", T, "\\frac38 is 3/8"),
    ("\\frac{3}{8}", "\\frac38", T, "brace-less \\frac"),
    ("\\frac23", "0.67", F, "0.67 is not 2/3 at relative tolerance 1e-6"),
    ("\\frac{2}{3}", "0.6666667", T, "2/3 to 7 digits is within 1e-6"),
    ("\\frac{2}{3}", "\\frac{4}{6}", T, "equal rationals"),
    ("\\frac{2}{3}", "2/3", T, "slash fraction"),
    ("\\frac{1}{3}", "\\frac{1}{4}", F, "different fractions"),
    ("\\dfrac{5}{7}", "\\frac{5}{7}", T, "\\dfrac is \\frac"),
    ("\\tfrac{5}{7}", "5/7", T, "\\tfrac is \\frac"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", T, "minus inside or outside"),
    ("-\\frac{1}{2}", "-0.5", T, "negative fraction vs decimal"),
    (".75", "0.75", T, "decimal without leading zero"),
    ("2.50", "2.5", T, "trailing decimal zero"),
    ("2.5", "2.51", F, "different decimals"),
    ("3.14", "\\pi", F, "3.14 is not pi at 1e-6"),
    ("0.1", "0.10000001", T, "within relative tolerance 1e-6"),
    ("0.1", "0.1001", F, "outside relative tolerance"),
    ("300000", "3\\times10^{5}", T, "scientific notation with \\times"),
    ("300000", "3e5", T, "e-notation"),
    ("3\\times 10^5", "3e5", T, "two scientific forms"),
    ("300000", "3\\times10^{6}", F, "wrong power of ten"),
    ("2.5", "2\\frac12", T, "mixed number 2 1/2"),
    ("2.5", "2\\frac{1}{2}", T, "mixed number, braced"),
    ("2", "2 2/3", F, "a mixed number is not its integer part"),
    ("\\frac{8}{3}", "2 2/3", T, "mixed number written with a slash"),
    ("-2.5", "-2\\frac12", T, "negative mixed number"),
    ("2\\sqrt{3}", "\\sqrt{12}", T, "evaluator: 2 sqrt 3 = sqrt 12"),
    ("2\\sqrt3", "\\sqrt{12}", T, "brace-less \\sqrt"),
    ("\\frac{\\sqrt2}{2}", "\\frac1{\\sqrt2}", T, "rationalized root"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{\\sqrt{3}}{2}", F, "different roots"),
    ("\\sqrt{16}", "4", T, "perfect square root"),
    ("\\sqrt[3]{27}", "3", T, "cube root"),
    ("4\\pi", "4 \\pi", T, "space inside"),
    ("4\\pi", "12.566370614359172", T, "pi numerically"),
    ("4\\pi", "12.57", F, "rounded pi is not equal at 1e-6"),
    ("\\pi r^2", "\\pi r^{2}", T, "a command followed by a variable keeps its name"),
    ("2^{10}", "1024", T, "power"),
    ("2^{2^{64}}", "2^{2^{64}}+1", F, "huge exponent: not equal at once, never hangs"),
    ("2^{2^{64}}", "0", F, "huge exponent vs a number: unbounded"),
    ("10^{400}", "10^{400}", T, "identical text is equal even beyond the evaluator"),
    ("10^{400}", "10^{401}", F, "beyond 1e300 the values are unbounded: not equal"),
    ("(-8)^{1/3}", "2", F, "no real cube root trickery"),
    ("\\frac{1}{0}", "\\infty", F, "division by zero is not infinity"),
    ("e", "2.718281828459045", T, "e is Euler's number"),
    ("e^2", "7.38905609893065", T, "e squared"),
    ("\\ln 2", "0.6931471805599453", T, "natural logarithm"),
    ("\\log_2 8", "3", T, "logarithm with a base"),
    ("\\sin(0)", "0", T, "sine at zero"),
    ("\\cos(\\pi)", "-1", T, "cosine of pi"),
    ("|{-3}|", "3", T, "absolute value"),
    ("6\\div 4", "1.5", T, "\\div"),
    ("2\\cdot 3", "6", T, "\\cdot"),
    ("2\\times3", "6", T, "\\times"),
    ("2*3", "6", T, "asterisk"),
    ("(1+2)(3+4)", "21", T, "implicit multiplication of groups"),
    ("-3^2", "-9", T, "unary minus binds below the power"),
    ("(-3)^2", "9", T, "parenthesized base"),
    ("2^{-1}", "0.5", T, "negative exponent"),
    ("\\frac{1}{2}+\\frac{1}{3}", "\\frac{5}{6}", T, "sum of fractions exactly"),
    ("10", "10.0", T, "integer vs decimal"),
    ("10", "10.000001", T, "|10 - 10.000001| = 1e-6 <= 1e-6 * max(1, 10): within tolerance"),
    ("1", "1.000002", F, "|d| = 2e-6 > 1e-6 * max(1, 1)"),
    # percent
    ("35\\%", "35", T, "percent gold, pred without the sign"),
    ("35\\%", "0.35", T, "percent gold, pred as a fraction of one"),
    ("35\\%", "35\\%", T, "both percent"),
    ("35\\%", "35%", T, "\\% and %"),
    ("35", "35\\%", T, "plain gold, pred with a percent sign"),
    ("50", "0.5", F, "no blanket x100 leniency (Qwen's percent bug)"),
    ("0.5", "50", F, "no blanket /100 leniency"),
    ("50\\%", "0.05", F, "percent read only as 50 or 0.5"),
    ("12.5\\%", "\\frac{1}{8}", T, "percent vs fraction"),
    ("20\\%", "25\\%", F, "different percents"),
    # intervals, tuples, sets
    ("[-2,5)", "[-2,5)", T, "same interval"),
    ("[-2,5)", "[-2,5]", F, "open vs closed bracket (Qwen's interval bug)"),
    ("(-2,5]", "[-2,5]", F, "open vs closed left bracket"),
    ("(-\\infty, 3]", "(-\\infty,3]", T, "infinite endpoint"),
    ("(-\\infty, 3]", "(-\\infty,3)", F, "closing bracket differs"),
    ("(-\\infty,-2)\\cup(3,\\infty)", "(3,\\infty)\\cup(-\\infty,-2)", T, "union of intervals, any order"),
    ("(-\\infty,-2)\\cup(3,\\infty)", "(-\\infty,-2)\\cup[3,\\infty)", F, "union with a bracket changed"),
    ("\\left[ -2, 5 \\right)", "[-2,5)", T, "\\left \\right stripped"),
    ("(1,-2)", "(1,-2)", T, "same tuple"),
    ("(1,-2)", "(-2,1)", F, "tuples are ordered"),
    ("(1,-2)", "x=1, y=-2", T, "assignments read as the tuple of values"),
    ("x=1, y=-2", "(1,-2)", T, "assignments on the gold side"),
    ("(1,-2)", "1, -2", T, "a bare list meets a tuple in order"),
    ("(1,2,3)", "(1,2)", F, "tuple lengths differ"),
    ("1, 4, 9", "9,1,4", T, "lists are unordered"),
    ("1, 4, 9", "1,4", F, "a partial list is not equal"),
    ("2, 7", "7", F, "partial answer: one of two"),
    ("7", "2, 7", F, "extra element"),
    ("1, 1, 2", "1, 2, 2", F, "multisets: counts matter"),
    ("\\{1, 2\\}", "\\{2, 1\\}", T, "sets are unordered"),
    ("\\{1, 2\\}", "1, 2", T, "a set vs a bare list"),
    ("\\{1,2\\}", "(1,2)", F, "a set is not a tuple"),
    ("[1,2]", "1,2", F, "an interval is not a bare list"),
    ("(0,1)", "(0,1)", T, "open interval or tuple: same text"),
    ("(\\frac12, 3)", "(0.5, 3)", T, "tuple elements compared as numbers"),
    ("1\\pm\\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2", T, "\\pm expands to two answers"),
    ("1\\pm\\sqrt{2}", "1-\\sqrt{2},1+\\sqrt{2}", T, "\\pm, any order"),
    ("\\pm 3", "3, -3", T, "leading \\pm"),
    ("1\\pm\\sqrt{2}", "1+\\sqrt{2}", F, "only one of the two roots"),
    ("x=2", "2", T, "variable prefix"),
    ("2", "x = 2", T, "variable prefix on pred with spaces"),
    ("y=3x-2", "y=-2+3x", T, "equations with a variable, reordered"),
    ("y=3x-2", "3x-2", T, "prefix stripped: expression compared at points"),
    ("y = 3x - 2", "y=3x+2", F, "different intercept"),
    ("3x-y+13=0", "3x+4y+14=0", F, "different lines"),
    ("3x-y+13=0", "y=3x+13", T, "the same line written two ways"),
    ("3x-y+13=0", "6x-2y+26=0", T, "equations up to a constant factor"),
    ("x^2+y^2=1", "x^2+y^2=4", F, "different circles"),
    ("x<3", "x<3", T, "same inequality"),
    ("x<3", "3>x", T, "mirrored inequality"),
    ("x\\le 3", "x\\leq 3", T, "\\le and \\leq"),
    ("x\\le 3", "x<3", F, "strict vs non-strict"),
    ("x \\ge 2", "x\\geq2", T, "\\ge and \\geq"),
    ("x > 2", "x \\ge 2", F, "strict vs non-strict, other direction"),
    # expressions with variables
    ("(x-1)^2", "x^2-2x+1", T, "expanded square"),
    ("(x-1)^2", "x^2-2x-1", F, "wrong constant"),
    ("(x+1)(x-1)", "x^2-1", T, "difference of squares"),
    ("\\frac{x}{2}", "0.5x", T, "fraction of a variable"),
    ("2x+3y", "3y+2x", T, "commutativity"),
    ("2x+3y", "3x+2y", F, "coefficients swapped"),
    ("\\frac{1}{x+1}", "(x+1)^{-1}", T, "negative power"),
    ("a^2b", "ba^2", T, "two-letter products commute"),
    ("x_1+x_2", "x_2+x_1", T, "subscripted variables"),
    ("x_1", "x_2", F, "different subscripts are different variables"),
    ("\\sqrt{x^2}", "x", T, "at the positive fixed points sqrt(x^2) = x (documented limit)"),
    ("\\sin^2 x", "1-\\cos^2 x", F, "\\sin^2 x is not parsed as sin(x)^2: text, not equal (documented limit)"),
    ("2\\pi r", "2r\\pi", T, "pi times a variable"),
    ("3+2i", "2i+3", T, "complex numbers as expressions in i"),
    # text answers
    ("\\text{Tuesday}", "tuesday", T, "text compares case-insensitively"),
    ("Tuesday", "Wednesday", F, "different words"),
    ("\\text{(D)}", "D", T, "choice letter in parentheses"),
    ("(D)", "\\textbf{D}", T, "choice letter, bold"),
    ("D", "C", F, "different choice letters"),
    ("\\text{no solution}", "No Solution", T, "text with spaces, any case"),
    ("yes", "no", F, "different words"),
    ("abc", "bca", F, "a run of three letters is a word, not a product"),
    ("1011_2", "11", F, "a base-2 numeral is not the decimal 11"),
    ("1011_2", "1011_{2}", F, "subscript written differently: text compare (documented)"),
    ("1011_2", "1011_2", T, "same base numeral"),
    # degrees, units
    ("30^\\circ", "30", T, "degree mark dropped"),
    ("30^{\\circ}", "30^\\circ", T, "both degree forms"),
    ("30°", "30", T, "Unicode degree sign"),
    ("30", "30 degrees", T, "degree word"),
    ("30^\\circ", "\\frac{\\pi}{6}", F, "degrees vs radians are not equal"),
    ("\\frac{\\pi}{6}", "30", F, "radians vs degrees"),
    ("5", "5 \\text{ cm}", T, "\\text unit"),
    ("25", "25\\text{ cm}^2", T, "\\text unit with exponent"),
    ("25", "25 \\text{ square units}", T, "square units"),
    ("6", "6 inches", T, "plain unit word"),
    ("18", "\\$18", T, "escaped dollar"),
    ("18", "18 dollars", T, "dollars"),
    ("18.00", "\\$18", T, "money with cents"),
    ("42", "42 apples", T, "object word after a number"),
    ("12", "12元", T, "Chinese unit yuan"),
    ("3", "3个", T, "Chinese classifier"),
    ("7", "7天", T, "Chinese unit day"),
    ("100", "100米", T, "Chinese unit metre"),
    ("60", "60分钟", T, "Chinese unit minutes"),
    ("5", "5 m", T, "metre"),
    ("5", "5m", T, "unit glued to the number"),
    ("m", "5", F, "a letter is not a unit alone"),
    ("2\\text{ hours}", "120 minutes", F, "no unit conversion (documented)"),
    # unicode, full width, markdown
    ("-5", "−5", T, "U+2212 minus"),
    ("12", "１２", T, "full-width digits"),
    ("6", "2×3", T, "multiplication sign"),
    ("2\\sqrt{2}", "2√2", T, "root sign"),
    ("\\infty", "∞", T, "infinity sign"),
    ("3.5", "３．５", T, "full-width decimal point"),
    ("-3", "－3", T, "full-width minus"),
    ("\\frac{1}{2}", "$\\frac{1}{2}$", T, "inline math dollars"),
    ("\\frac{1}{2}", "\\[\\frac{1}{2}\\]", T, "display math delimiters"),
    ("\\frac{1}{2}", "\\(\\frac12\\)", T, "inline math delimiters"),
    ("5", "5.", T, "trailing period"),
    ("5", "5。", T, "Chinese full stop"),
    ("\\frac{1}{4}", "\\\\frac{1}{4}", T, "JSON-escaped twice"),
    ("10", "\\displaystyle 10", T, "\\displaystyle stripped"),
    ("10", "\\mathrm{10}", T, "\\mathrm wrapper"),
    ("\\boxed{11}", "11", T, "a box inside the answer is unwrapped"),
    ("\\left(1,2\\right)", "(1,2)", T, "\\left( and \\right)"),
    ("x\\le 3", "x\\left\\le 3", T, "\\left is dropped as a whole token, \\le stays"),
    ("\\tan x", "\\tan x", T, "\\tan x is kept whole (a naive remover makes \\tx)"),
    ("\\tan x", "\\tx", F, "\\tan is not \\t"),
    ("\\le", "\\left", F, "\\left must not become \\le"),
    ("2", "2 or -3", F, "a list of two is not one value"),
    ("2, -3", "2 \\text{ or } -3", T, "'or' between values is a list"),
    ("2, -3", "-3 and 2", T, "'and' between values is a list"),
    # empty and garbage
    ("5", "", F, "empty pred"),
    ("", "5", F, "empty gold"),
    ("5", "$$", F, "only dollars: empty after normalization"),
    ("\\frac{1}{2", "0.5", F, "unbalanced brace: not an expression"),
    ("((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))", "1", F, "nesting beyond 64 levels is not evaluated"),
    ("(((1)))", "1", T, "shallow nesting is fine"),
    ("1e400", "1e401", F, "decimal overflow is not equal"),
    # peers' rules and reported bugs (docs/answer.md, Peers)
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", F, "Math-Verify issue 14: tiny values must not all round to 0 (its 6-decimal float rounding)"),
    ("0.0000001", "0", F, "Math-Verify float_rounding=6 calls 1e-7 and 0 equal; tolerance is relative, never absolute"),
    ("0.000002", "0.000003", F, "tiny decimals differ by 50%: no absolute floor (Math-Verify rounds both to 1e-6 steps)"),
    # the one allowance next to 0: rounding noise of a computed value, never a literal
    ("0", "1e-20", F, "a literal 1e-20 is not 0: the noise allowance is for computed values only"),
    ("1e-20", "0", F, "a literal 1e-20 is not 0, either order"),
    ("0", "-1e-20", F, "a signed literal is still a literal"),
    ("0.0", "0.0000000000000001", F, "decimal literals: 1e-16 is not 0"),
    ("0", "\\frac{1}{10^{16}}", F, "an exact rational 1e-16 is not 0 (exact values carry no noise)"),
    ("0", "\\sqrt{2}^2-2", T, "computed: long double noise of sqrt(2)^2 - 2 is 0"),
    ("0", "\\sin(\\pi)", T, "computed: sin of a rounded pi is 0"),
    ("0", "1-1.0", T, "computed: 1 - 1.0 is 0"),
    ("0", "\\frac{9}{410003881642066001}\\%", F, "an exact rational read as percent is not noise, even when /100 leaves int64"),
    ("1.5\\times10^{-8}", "1.5e-8", T, "tiny equal values still compare equal relative to their size"),
    ("n=2,3,4", "n=1,2,3", F, "Math-Verify issue 14: a shared 'n=' prefix must not make different lists equal"),
    ("D=(0,1)", "D=(0,1.5)", F, "Math-Verify issue 14: a shared 'D=' prefix must not hide a different tuple"),
    ("19, 46, \\text{ and } 82", "21, 36, and 82", F, "Math-Verify issue 14: lists with 'and' compare element by element"),
    ("19, 46, \\text{ and } 82", "82, 46, 19", T, "a list written with 'and' is the same unordered list"),
    ("1-\\frac{1}{\\mathrm{e}}", "1+\\frac{1}{\\mathrm{e}}", F, "Math-Verify issue 14: sign of a term matters"),
    ("\\pm 2021", "2021", F, "Math-Verify issue 14: \\pm is two answers, one is partial"),
    ("12:00", "1:00", F, "Math-Verify issue 14: times are text, not ratios"),
    ("3x-y+13=0", "3x+4y+14=0", F, "Math-Verify issue 60: different lines (parsed both to 0 there)"),
    ("\\text{13}", "13", T, "Math-Verify issue 37: \\text{} around a number is the number"),
    ("2x+2y=2", "x+y=1", T, "Qwen2.5-Math grader compares |lhs-rhs| without scaling; equations equal up to a factor"),
    ("12", "1,2", F, "Qwen2.5-Math parse_digits strips every comma: '1,2' is a list, not 12"),
    ("23", "2 and 3", F, "Qwen2.5-Math strip_string deletes 'and' anywhere: '2 and 3' is a list, not 23"),
    ("a+b", "b", F, "Qwen2.5-Math unit list has single letters ('a', 'm', 's'...) that it strips from expressions"),
    ("m+n", "n", F, "Qwen2.5-Math strips the unit 'm' from 'm+n'"),
    ("(1,2)", "[1,2]", F, "Qwen2.5-Math compare_lists ignores bracket kinds: open vs closed interval"),
    ("\\{1,2\\}", "(1,2)", F, "Qwen2.5-Math removes braces and parentheses: a set is not a tuple"),
    ("\\{1,2\\}", "\\{2,1\\}", T, "Qwen2.5-Math misses reordered sets (string compare after bracket removal)"),
    ("0.5", "50", F, "Qwen2.5-Math include_percentage also tries gold*100: plain 0.5 is not 50"),
    ("50\\%", "0.5", T, "a percent gold accepts its fraction"),
    ("1000", "1000.05", F, "Qwen2.5-Math rel_tol 1e-4 equates these (5e-5 apart); ours is 1e-6"),
    ("3.1416", "\\pi", F, "Qwen2.5-Math clean_units turns pi into 3.14; pi is not a 6-digit decimal at 1e-6"),
    ("\\text{five}", "5", F, "Qwen2.5-Math converts number words (word2number); rejected: words stay text"),
    ("\\frac{\\sqrt{3}}{2}", "0.866", F, "0.866 is sqrt(3)/2 to 3 digits only: not within 1e-6"),
    ("1", "1.0000001", T, "within 1e-6 relative"),
    ("-1,234.5", "-1234.5", T, "PaddleNLP GSM8K reader strips commas: ours keeps thousands groups only"),
]

# (text, found, answer, truncated, reason)
EXTRACT = [
    ("The answer is \\boxed{5}.", T, "5", F, "simple box"),
    ("\\boxed{\\frac{1}{2}}", T, "\\frac{1}{2}", F, "nested braces"),
    ("\\boxed{\\boxed{11}}", T, "\\boxed{11}", F, "box in a box: the outer content"),
    ("So \\boxed 5 is it", T, "5", F, "space form"),
    ("$\\boxed 5$", T, "5", F, "space form ends at '$'"),
    ("\\boxed{5", F, "", F, "unclosed box: no answer, never the rest of the text"),
    ("first \\boxed{3} then \\boxed{4", F, "", F, "the last box is unclosed: no answer"),
    ("\\boxed{}", F, "", F, "empty box: no answer"),
    ("\\boxed{  }", F, "", F, "box of spaces: no answer"),
    ("\\fbox{7}", T, "7", F, "\\fbox"),
    ("\\boxed{\\{1,2\\}}", T, "\\{1,2\\}", F, "escaped braces do not count"),
    ("\\boxed{a\\}b}", T, "a\\}b", F, "escaped closing brace inside"),
    ("\\boxed{1} and later \\boxed{2}", T, "2", F, "the last box wins"),
    ("\\boxed{2} and \\boxed{-3}", T, "2, -3", F, "adjacent boxes joined with 'and'"),
    ("$\\boxed{2}$, $\\boxed{-3}$", T, "2, -3", F, "adjacent boxes joined with commas and dollars"),
    ("\\boxed{2}\\quad\\boxed{-3}\\quad\\boxed{5}", T, "2, -3, 5", F, "three adjacent boxes"),
    ("\\boxed{5} \\boxed{5}", T, "5", F, "a repeated box is one answer"),
    ("\\boxed{2} so the other is \\boxed{-3}", T, "-3", F, "boxes separated by words are not adjacent"),
    ("\\boxed{2} 和 \\boxed{3}", T, "2, 3", F, "Chinese 'and' joins"),
    ("\\boxed{2}、\\boxed{3}", T, "2, 3", F, "Chinese enumeration comma joins"),
    ("\\\\boxed{\\\\frac{1}{4}}", T, "\\frac{1}{4}", F, "JSON-escaped twice"),
    ("\\boxedx{5}", T, "5", F, "\\boxedx is another command... the last-number fallback finds 5"),
    ("<think>Maybe \\boxed{3}.</think>The answer is \\boxed{4}.", T, "4", F, "box after </think>"),
    ("<think>Try \\boxed{3}.</think>So the answer is 4.", T, "4", F, "a box in the think block never beats the answer region"),
    ("<think>Try \\boxed{3}.</think>", F, "", F, "nothing after </think>: no answer"),
    ("<think>Let me compute 2+2 = 4, so \\boxed{4}", F, "", T, "<think> without </think>: truncated"),
    ("<think>a</think>b<think>c</think>\\boxed{9}", T, "9", F, "the last </think> starts the region"),
    ("Final Answer: The final answer is $7$. I hope it is correct.", T, "$7$", F, "Minerva format"),
    ("Final Answer: The final answer is \\frac{1}{2}. I hope it is correct.", T, "\\frac{1}{2}", F, "Minerva with a fraction"),
    ("So the answer is 12 apples.", T, "12 apples", F, "'the answer is' to the end of the sentence"),
    ("Therefore, the answer is 3.5. Done", T, "3.5", F, "decimal point is not a sentence end"),
    ("THE ANSWER IS 8", T, "8", F, "case-insensitive"),
    ("所以答案是 12。", T, "12", F, "Chinese 答案是"),
    ("最终答案：5", T, "5", F, "Chinese 最终答案 with full-width colon"),
    ("因此，最终答案是 \\frac{3}{4}。", T, "\\frac{3}{4}", F, "Chinese with LaTeX"),
    ("The total is **18**.", T, "18", F, "final bold"),
    ("**Answer:** 18", T, "18", F, "bold heading with a colon: the rest of the line"),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", T, "72", F, "GSM8K gold"),
    ("She has 3 apples and buys 4 more, so 7 in all", T, "7", F, "last number"),
    ("It costs $1,250.50 total", T, "1,250.50", F, "last number with separator and decimals"),
    ("It is -3", T, "-3", F, "negative last number"),
    ("No numbers here", F, "", F, "nothing to extract"),
    ("", F, "", F, "empty text"),
    ("The answer is \\boxed{\\text{(C)}}", T, "\\text{(C)}", F, "choice in a box"),
    ("\\boxed{x^2+2x+1}", T, "x^2+2x+1", F, "expression"),
    ("\\boxed{[-2,5)}", T, "[-2,5)", F, "interval with unbalanced-looking brackets"),
    ("\\boxed{ 42 }", T, "42", F, "spaces trimmed"),
    ("text \\boxed{1}\n\n**Final Answer**\n\\[\\boxed{2}\\]", T, "2", F, "display math box"),
    ("\\boxed{1}\\]\n\\[\\boxed{2}", T, "1, 2", F, "display delimiters between boxes are separators"),
    ("<think>\nOkay</think>\n\n**Final Answer**\nThe answer is \\boxed{12,000}.", T, "12,000", F, "R1 short form"),
    ("\\boxed{\\frac{a}{b}} is wrong, correct: \\boxed{\\dfrac{3}{5}}", T, "\\dfrac{3}{5}", F, "last box"),
    ("answer: \\boxed{{5}}", T, "{5}", F, "double braces kept for the normalizer"),
    # peers' extraction rules and reported bugs (docs/answer.md, Peers)
    ("I boxed the 5 earlier. The answer is \\boxed{7}. I have boxed it twice.", T, "7", F, "Qwen2.5-Math parser splits on the last word 'boxed', even in prose; only the \\boxed command counts"),
    ("答案是 3。不对，重新计算一下：答案是 5。", T, "5", F, "Qwen2.5-Math parser takes the first '答案是'; the last one is the final answer"),
    ("We list the pair 1,2", T, "2", F, "Qwen2.5-Math removes every comma before the last-number regex (giving 12); '1,2' is not a thousands group"),
    ("Left: 437 + 2*234 = 905\n\nRight: 905\n\n✅ Final Answer: **73**", T, "73", F, "Math-Verify issue 76: a final **73** after an emoji heading is the answer, not an earlier 234"),
    ("So \\boxed{3}, since {x} is even.", T, "3", F, "PaddleNLP's greedy boxed\\{(.*)\\} runs to the last brace; a box ends at its balanced brace"),
    ("Final Answer: The final answer is $4$. I hope it is correct.\n\nWait, recheck: \\boxed{5}", T, "5", F, "Qwen2.5-Math tries the Minerva phrase before boxes; a box beats every fallback"),
    ("The answer is 12. Let me double-check: 3*4=12 and 12/4=3.", T, "12", F, "Qwen2.5-Math takes everything after 'he answer is'; ours stops at the sentence end"),
]

# (input, normalized, reason)
NORMALIZE = [
    ("\\left( 1, 2 \\right)", "(1,2)", "\\left and \\right dropped"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", "\\dfrac -> \\frac"),
    ("\\frac12", "\\frac{1}{2}", "brace-less \\frac"),
    ("\\sqrt3", "\\sqrt{3}", "brace-less \\sqrt"),
    ("\\frac1{\\sqrt2}", "\\frac{1}{\\sqrt{2}}", "mixed brace-less arguments"),
    ("\\tan x", "\\tan x", "\\tan keeps its name and its space"),
    ("x \\le 3", "x\\le3", "\\le kept"),
    ("\\text{Tuesday}", "Tuesday", "\\text wrapper"),
    ("\\textbf{42}", "42", "\\textbf wrapper"),
    ("$5$", "5", "dollars"),
    ("\\$5", "5", "escaped dollar"),
    ("5\\%", "5%", "percent"),
    ("30^\\circ", "30", "degrees"),
    ("12,000", "12000", "thousands"),
    ("1{,}600", "1600", "LaTeX thousands"),
    ("12, 18", "12,18", "list"),
    ("x = 5", "5", "prefix"),
    ("5 \\text{ cm}^2", "5", "unit with exponent"),
    ("5 cm", "5", "plain unit"),
    ("−3", "-3", "U+2212"),
    ("１２", "12", "full-width digits"),
    ("2×3", "2\\times3", "times sign"),
    ("\\displaystyle \\frac{1}{2}", "\\frac{1}{2}", "\\displaystyle"),
    ("a\\,b\\!c\\;d\\quad e", "abcde", "spacing commands"),
    ("5.", "5", "trailing period"),
    ("\\text{(D)}", "D", "choice letter"),
    ("2 2/3", "2\\frac{2}{3}", "mixed number"),
    ("\\pi r^2", "\\pi r^2", "command then a letter keeps a space"),
    ("\\left\\{ 1, 2 \\right\\}", "\\{1,2\\}", "set braces survive \\left"),
    ("2 or 3", "2,3", "'or' as a list comma"),
]

# Long R1-style outputs.
PARAGRAPHS = [
    "Okay, let's see. I need to figure out how many clips Natalia sold altogether in April and May. "
    "The problem says she sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "So first, I should find out how many she sold in May, and then add that to April's number.\n\n",
    "Wait, let me double-check. If half of 48 is 24, then adding 48 and 24 gives 72. Hmm, but maybe I should "
    "write it as \\frac{48}{2} = 24 to be careful; \\boxed{24} would be the May count only, not the total.\n\n",
    "嗯，我再检查一下。四月卖了48个，五月卖了一半，也就是24个，所以总共是48+24=72个。"
    "不过题目问的是总数，所以不是24。\n\n",
    "Let me verify with another approach: 48 \\times 1.5 = 72. Yes, that matches. So the total is 72.\n\n",
]

def r1_output(answer_region, repeats, closed=True):
    body = "".join(PARAGRAPHS[i % len(PARAGRAPHS)] for i in range(repeats))
    return "<think>\n" + body + ("</think>\n\n" + answer_region if closed else "")

LONG = [
    (r1_output("Natalia sold 48 clips in April and 24 in May.\n\n**Final Answer**\n\\[\n\\boxed{72}\n\\]", 8), T, "72", F,
     "R1 output of about 3 KB: box after </think>, decoy box inside think"),
    (r1_output("So the total is \\(\\boxed{72}\\) clips.", 60), T, "72", F, "R1 output of about 20 KB"),
    (r1_output("所以，娜塔莉亚一共卖了 $\\boxed{72}$ 个发夹。", 20), T, "72", F, "Chinese answer region"),
    (r1_output("", 30, closed=False), F, "", T, "cut off inside the think block: truncated"),
    (r1_output("The answer is 72.", 12), T, "72", F, "no box after </think>: 'the answer is' fallback, not the think box"),
    (r1_output("最终答案是 72。", 12), T, "72", F, "Chinese fallback after </think>"),
    (r1_output("\\boxed{72", 12), F, "", F, "unclosed box after a long think: no answer"),
]
EXTRACT += LONG

# r1_answer_check_response: (response, gold, gold_format, found, truncated, correct, reason)
CHECK = [
    (r1_output("**Final Answer**\n\\boxed{72}", 6), "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "gsm8k", T, F, T, "GSM8K gold, correct"),
    (r1_output("**Final Answer**\n\\boxed{24}", 6), "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "gsm8k", T, F, F, "GSM8K gold, wrong"),
    (r1_output("", 6, closed=False), "#### 72", "gsm8k", F, T, F, "truncated output is not correct"),
    ("The answer is \\boxed{\\frac{1}{2}}", "We get $\\boxed{\\dfrac12}$.", "boxed", T, F, T, "MATH gold with a box"),
    ("The answer is \\boxed{0.5}", "We get $\\boxed{\\frac{1}{2}}$.", "boxed", T, F, T, "decimal vs boxed fraction"),
    ("The answer is \\boxed{[-2,5]}", "$\\boxed{[-2,5)}$", "boxed", T, F, F, "interval bracket differs"),
    ("\\boxed{1,000}", "1000", "plain", T, F, T, "plain gold with separator in pred"),
    ("\\boxed{100000}", "99999", "plain", T, F, F, "exact integers"),
    ("答案是 12。", "12", "plain", T, F, T, "Chinese fallback vs plain gold"),
    ("no number", "5", "plain", F, F, F, "no answer"),
    ("\\boxed{7}", "no box here", "boxed", T, F, F, "a gold without a box never matches"),
]


def reason_ok(rows):
    for row in rows:
        assert row[-1] and "\n" not in row[-1], row


def dump(rows, keys):
    lines = []
    for row in rows:
        lines.append(json.dumps(dict(zip(keys, row)), ensure_ascii=False, sort_keys=True))
    return ("\n".join(lines) + "\n").encode("utf-8")


def files():
    for table in (EQUAL, EXTRACT, NORMALIZE, CHECK):
        reason_ok(table)
    return {
        "golden/answer/equal.jsonl": dump(EQUAL, ["gold", "pred", "equal", "reason"]),
        "golden/answer/extract.jsonl": dump(EXTRACT, ["text", "found", "answer", "truncated", "reason"]),
        "golden/answer/normalize.jsonl": dump(NORMALIZE, ["input", "normalized", "reason"]),
        "golden/answer/check.jsonl": dump(CHECK, ["response", "gold", "gold_format", "found", "truncated", "correct", "reason"]),
    }


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    os.chdir(root)
    out = files()
    total = len(EQUAL) + len(EXTRACT) + len(NORMALIZE) + len(CHECK)
    if "--check" in sys.argv:
        bad = [p for p, data in out.items() if not os.path.exists(p) or open(p, "rb").read() != data]
        if bad:
            print("answer.py --check: differ:", " ".join(bad), "(run python3 golden/gen/answer.py)")
            sys.exit(1)
        print(f"answer.py --check: {len(out)} files, {total} cases, identical")
        return
    os.makedirs("golden/answer", exist_ok=True)
    for path, data in out.items():
        with open(path, "wb") as f:
            f.write(data)
    manifest.replace_folder("golden/answer",
                            [f"{path} golden/gen/answer.py 0 {hashlib.sha256(data).hexdigest()}"
                             for path, data in out.items()])
    print(f"answer.py: wrote {len(out)} files, {total} cases")


if __name__ == "__main__":
    main()
