//! Broker signature reminders.
