# config/deploy/production.rb: your servers. Each runs its own rollback-watcher.
server "web-1.example.com", user: "deploy", roles: %w[app]
server "web-2.example.com", user: "deploy", roles: %w[app]
