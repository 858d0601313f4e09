"""Ask a running ``mafioso worker`` to explain a file, through the official ``openai`` client.

    mafioso worker &                                         # http://127.0.0.1:8000 by default
    python examples/client_openai.py examples/fizzbuzz.py    # MAFIOSO_URL / MAFIOSO_API_KEY if you set them

The worker speaks the OpenAI chat and completions APIs; the model is called "mafioso". Put the code in a
fenced block; any text outside the fence is the request ("is there a bug?").
"""

import os
import sys
from pathlib import Path

from openai import OpenAI


def main() -> int:
    code = Path(sys.argv[1]).read_text(encoding="utf-8")
    request = sys.argv[2] if len(sys.argv) > 2 else "Explain this code."
    client = OpenAI(base_url=os.environ.get("MAFIOSO_URL", "http://127.0.0.1:8000").rstrip("/") + "/v1",
                    api_key=os.environ.get("MAFIOSO_API_KEY") or "none")
    chat = client.chat.completions.create(model="mafioso", messages=[
        {"role": "user", "content": f"{request}\n```python\n{code}\n```"}])
    print(chat.choices[0].message.content)
    print(f"[{chat.usage.completion_tokens} tokens, finish_reason={chat.choices[0].finish_reason}]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
