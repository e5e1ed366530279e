"""The dashboard's views, split by who uses them: accounts (sign-in and the second factor),
analysts (children, decisions, the link queue), engineers (pipeline health), admins (audit log),
and error pages."""
