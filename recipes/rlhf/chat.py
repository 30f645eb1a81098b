"""The repo's chat format, close to the Q:/A: pages the base model read in pretraining.

    Q: What is the population of Valmora?
    A: The population of Valmora is 1.4 million.<|endoftext|>

Keeping the assistant format near text the base model already knows lets its knowledge survive SFT.
The `{% generation %}` markers let TRL compute the loss on the assistant's tokens only.
"""

from __future__ import annotations

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ 'Q: ' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'A:' }}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}{{ '\\n\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'A:' }}{%- endif -%}"
)
