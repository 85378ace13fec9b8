"""Computes the reference renderings for the chat template tests with transformers.

For each real tokenizer under .deps/tokenizers/ (qwen3, gemma3, llama3_1) and each
conversation of the set below, it records what
`AutoTokenizer.from_pretrained(folder).apply_chat_template(messages, tokenize=False, ...)`
returns, or, when the template refuses the conversation, the error's message. The set
covers a system prompt with several turns, unicode, empty content, the generation prompt on
and off, Qwen3's `enable_thinking` on and off, an assistant message holding `<think>`
content, and conversations that make a template call `raise_exception`.

It also writes small model folders beside OUT.json, under chat_template_variants/, that
exercise where transformers finds a template and which one it uses:

  named_list       tokenizer_config.json's chat_template as a list of {name, template}
                   ("default" and "tool_use")
  jinja_file       a chat_template.jinja beside a tokenizer_config.json that has its own
                   template (the file wins) and additional_chat_templates/NAME.jinja
  features         a template using what HF templates use beyond the three real ones:
                   tojson with its options, namespaces, loop controls, Python string and
                   dict methods, printing None/booleans/lists/dicts, extra variables of any
                   JSON type, and special-token variables
  generation_tag   a training-style template that marks assistant text with
                   {% generation %} ... {% endgeneration %} (with whitespace control)

and records transformers' rendering of each (by template name where it has several). The
variant folders link to Qwen3's tokenizer.json so that transformers can load them.

Usage: chat_template_refs.py OUT.json
"""

import json
import os
import shutil
import sys
from pathlib import Path

from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parent.parent
TOKENIZERS = ["qwen3", "gemma3", "llama3_1"]


def msg(role, content):
    return {"role": role, "content": content}


# name -> (messages, add_generation_prompt, template kwargs)
CONVERSATIONS = {
    "single_user": ([msg("user", "Hello!")], True, {}),
    "single_user_no_prompt": ([msg("user", "Hello!")], False, {}),
    "system_multi_turn": (
        [
            msg("system", "You are a terse assistant."),
            msg("user", "What is 2+2?"),
            msg("assistant", "4."),
            msg("user", "And 3+3?"),
            msg("assistant", "6."),
            msg("user", "Thanks.  Bye\n"),
        ],
        True,
        {},
    ),
    "multi_turn_ends_with_assistant": (
        [msg("user", "Hi"), msg("assistant", "Hello! How can I help?")],
        False,
        {},
    ),
    "unicode": (
        [
            msg("user", "中文测试：你好，世界！ 日本語 한국어 Ελληνικά العربية 👩‍👩‍👧‍👦 👍🏽 e\u0301"),
            msg("assistant", "Ответ: ¿qué? — «ok» ✓"),
            msg("user", "tabs\tand\r\nnewlines\n\n  spaces  "),
        ],
        True,
        {},
    ),
    "empty_content": ([msg("user", ""), msg("assistant", ""), msg("user", "")], True, {}),
    "special_tokens_in_text": (
        [msg("user", "Say <|im_end|> and <end_of_turn> and <|eot_id|> literally.")],
        True,
        {},
    ),
    "thinking_off": ([msg("user", "Quick answer please.")], True, {"enable_thinking": False}),
    "thinking_on": ([msg("user", "Think first.")], True, {"enable_thinking": True}),
    "assistant_with_think": (
        [
            msg("user", "What is 6*7?"),
            msg("assistant", "<think>\nSix times seven is forty-two.\n</think>\n\n42"),
            msg("user", "And 6*8?"),
        ],
        True,
        {},
    ),
    "last_assistant_with_think": (
        [
            msg("user", "What is 6*7?"),
            msg("assistant", "<think>\nSix times seven.\n</think>\n\n42"),
        ],
        False,
        {},
    ),
    # Gemma's template requires user/assistant alternation; two user messages in a row
    # make it raise. Others render it.
    "roles_not_alternating": ([msg("user", "one"), msg("user", "two")], True, {}),
    "assistant_first": ([msg("assistant", "I speak first."), msg("user", "ok")], True, {}),
}

# A template using features the three real templates do not: tojson's options,
# namespaces, loop controls, string and dict methods, Python's printing of values.
FEATURES_TEMPLATE = """{{ bos_token }}{% set ns = namespace(count=0, names=[]) %}
{% for m in messages %}
{% if m.role == 'skip' %}{% continue %}{% endif %}
{% if m.role == 'stop' %}{% break %}{% endif %}
{% set ns.count = ns.count + 1 %}
[{{ loop.index }}/{{ loop.length }}] {{ m.role | upper }}: {{ m.content.strip() }}|{{ m.content.lstrip('x') }}|{{ m.content.rstrip() }}
 split={{ m.content.split(' ') | tojson }} starts={{ m.content.startswith('Hel') }} ends={{ m.content.endswith('!') }} title={{ m.content.title() }} replace={{ m.content.replace('l', 'L') }}
{% endfor %}
count={{ ns.count }}
{% if config is defined %}
config={{ config | tojson }}
sorted={{ config | tojson(sort_keys=true) }}
indented={{ config | tojson(indent=2) }}
ascii={{ config | tojson(ensure_ascii=true) }}
compact={{ config | tojson(separators=(',', ':')) }}
{% for k, v in config.items() %}{{ k }}={{ v }};{% endfor %}

get={{ config.get('missing', 'fallback') }} keys={{ config.keys() | list | tojson }}
printed none={{ none }} true={{ true }} list={{ [1, 'a', none, true] }} dict={{ {'k': 'v', 'n': 1.5} }}
{% endif %}
eos={{ eos_token }} flag={{ flag }} number={{ number }}
{% if add_generation_prompt %}<assistant>{% endif %}
"""

FEATURES_KWARGS = {
    "config": {
        "name": "tool <b>&'quote'\"",
        "nested": {"z": [1, 2.5, -0.0, 1e20, 1.5e-7, None, True, False], "a": "é ü 中 👍"},
        "empty_list": [],
        "empty_dict": {},
        "big": 12345678901234567890,
        "ctrl": "tab\tnl\nbs\\",
    },
    "flag": True,
    "number": 7,
}

FEATURES_MESSAGES = [
    msg("user", "Hello world!"),
    msg("skip", "never shown"),
    msg("assistant", "xx  spaced out  "),
    msg("stop", "stops here"),
    msg("user", "not reached"),
]

GENERATION_TEMPLATE = """{% for m in messages %}
{% if m.role == 'assistant' %}
<a>  {%- generation -%}  {{ m.content }}  {%- endgeneration %}</a>
{% else %}
<u>{{ m.content }}</u>{%generation%}!{%endgeneration%}
{% endif %}
{% endfor %}"""

DEFAULT_TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
TOOL_TEMPLATE = (
    "TOOLS {{ tools | tojson if tools else 'none' }}\n"
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
)
CONFIG_TEMPLATE = "CONFIG TEMPLATE {% for m in messages %}{{ m.content }}{% endfor %}"
FILE_TEMPLATE = "FILE TEMPLATE {% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}"
EXTRA_TEMPLATE = "EXTRA TEMPLATE {{ messages | length }} {{ eos_token }}"


def render(tok, messages, add_generation_prompt, kwargs, template_name=None):
    try:
        text = tok.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=template_name,
            **kwargs,
        )
        return {"text": text}
    except Exception as e:  # the template's own error is the expected value
        return {"error": str(e), "error_type": type(e).__name__}


def make_variant(base, name, config_updates, files):
    folder = base / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    src = ROOT / ".deps" / "tokenizers" / "qwen3"
    config = json.loads((src / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    config.update(config_updates)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2))
    os.symlink(os.path.relpath(src / "tokenizer.json", folder), folder / "tokenizer.json")
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def main():
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    hf_logging.set_verbosity_error()

    conversations = {
        name: {"messages": m, "add_generation_prompt": agp, "kwargs": kw}
        for name, (m, agp, kw) in CONVERSATIONS.items()
    }
    tokenizers = {}
    for name in TOKENIZERS:
        tok = AutoTokenizer.from_pretrained(str(ROOT / ".deps" / "tokenizers" / name))
        tokenizers[name] = {
            conv: render(tok, c["messages"], c["add_generation_prompt"], c["kwargs"])
            for conv, c in conversations.items()
        }

    base = out.parent / "chat_template_variants"
    variants = {}
    user_only = [msg("user", "Hi"), msg("assistant", "Hello"), msg("user", "Bye")]
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]

    folder = make_variant(
        base,
        "named_list",
        {"chat_template": [{"name": "default", "template": DEFAULT_TEMPLATE}, {"name": "tool_use", "template": TOOL_TEMPLATE}]},
        {},
    )
    tok = AutoTokenizer.from_pretrained(str(folder))
    variants["named_list"] = {
        "default": render(tok, user_only, True, {}),
        "tool_use": render(tok, user_only, False, {"tools": tools}, template_name="tool_use"),
    }

    folder = make_variant(
        base,
        "jinja_file",
        {"chat_template": CONFIG_TEMPLATE},
        {"chat_template.jinja": FILE_TEMPLATE, "additional_chat_templates/extra.jinja": EXTRA_TEMPLATE},
    )
    tok = AutoTokenizer.from_pretrained(str(folder))
    variants["jinja_file"] = {
        "default": render(tok, user_only, True, {}),
        "extra": render(tok, user_only, True, {}, template_name="extra"),
    }

    folder = make_variant(base, "features", {"chat_template": FEATURES_TEMPLATE, "bos_token": "<|endoftext|>"}, {})
    tok = AutoTokenizer.from_pretrained(str(folder))
    variants["features"] = {
        "default": render(tok, FEATURES_MESSAGES, True, FEATURES_KWARGS),
        "no_config": render(tok, FEATURES_MESSAGES[:1], False, {"flag": False, "number": -2.5}),
    }

    folder = make_variant(base, "generation_tag", {"chat_template": GENERATION_TEMPLATE}, {})
    tok = AutoTokenizer.from_pretrained(str(folder))
    variants["generation_tag"] = {"default": render(tok, user_only, False, {})}

    refs = {
        "conversations": conversations,
        "tokenizers": tokenizers,
        "variants": {
            "named_list": {"user_only": user_only, "tools": tools, "renders": variants["named_list"]},
            "jinja_file": {"user_only": user_only, "renders": variants["jinja_file"]},
            "generation_tag": {"user_only": user_only, "renders": variants["generation_tag"]},
            "features": {
                "messages": FEATURES_MESSAGES,
                "kwargs": FEATURES_KWARGS,
                "renders": variants["features"],
            },
        },
    }
    out.write_text(json.dumps(refs, ensure_ascii=False, indent=1))
    errors = sum("error" in r for t in tokenizers.values() for r in t.values())
    print(f"wrote {out}: {len(TOKENIZERS)} tokenizers x {len(conversations)} conversations ({errors} raise), "
          f"{sum(len(v) for v in variants.values())} variant renderings")


if __name__ == "__main__":
    main()
