"""What faces the public: prompt rules, visitors, moderation."""
