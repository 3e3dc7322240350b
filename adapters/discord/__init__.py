"""The Discord adapter: /remix, "Apps → Remix", mentions, persistent buttons, progress and history."""
