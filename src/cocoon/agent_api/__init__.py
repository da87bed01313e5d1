"""The OpenAI API that agents use: tools, structured output, logprobs, the Responses API."""
