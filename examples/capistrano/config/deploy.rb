# config/deploy.rb: a Capistrano 3 deploy watched by rollback-watcher on each server.
#
# Two hooks, both tested by tests/integrations/test_capistrano.py (a real `cap production deploy`
# over SSH to a private sshd on 127.0.0.1):
#
#  1. The switch of `current` holds the watcher's deploy lock (`deploy_lock:` in watcher.yaml):
#     the watcher never rolls back while Capistrano re-points `current`, and Capistrano waits
#     while the watcher is switching. Every `execute` is its own SSH command, so the lock must be
#     held by one command: flock(1) around the stock "ln -s, then mv" of deploy:symlink:release.
#  2. After "deploy:published" (a deploy, and also `cap deploy:rollback`) the watcher is told at
#     once with `rollback-watcher mark deployed ID` instead of waiting for its next poll. A human's
#     `cap deploy:rollback` is thereby a deploy to the watcher: a new watch window, never fought.
#
# Settings here default to what a host with `make install` has; override them per stage.

lock "~> 3.17"

set :application, ENV.fetch("APP_NAME", "shop-api")
set :repo_url, ENV.fetch("REPO_URL", "git@git.example.com:shop/shop-api.git")
set :deploy_to, ENV.fetch("DEPLOY_TO", "/srv/shop-api")
set :branch, ENV.fetch("BRANCH", "main")
set :keep_releases, 5

# Where rollback-watcher lives on the servers, and its config and deploy lock.
set :watcher_bin, ENV.fetch("WATCHER_BIN", "/opt/rollback-watcher/bin/rollback-watcher")
set :watcher_config, ENV.fetch("WATCHER_CONFIG", "/etc/rollback-watcher/watcher.yaml")
set :watcher_lock, ENV.fetch("WATCHER_LOCK", "/var/lib/shop-api/deploy.lock")
# How long the switch waits for a rollback in progress to finish (the watcher holds the lock for
# its switch and its verification only), in seconds. flock exits 75 when it gives up.
set :watcher_lock_wait, ENV.fetch("WATCHER_LOCK_WAIT", "120")

# Replace the stock deploy:symlink:release (ln -s + mv, two SSH commands) by the same two steps
# under the deploy lock, as ONE command. `mv -T` is rename(2) over `current`: atomic.
Rake::Task["deploy:symlink:release"].clear_actions
namespace :deploy do
  namespace :symlink do
    task :release do
      on release_roles(:all) do
        tmp_link = deploy_path.join(".current.tmp")
        execute :flock, "-w", fetch(:watcher_lock_wait), "-E", "75", fetch(:watcher_lock), "sh", "-c",
                "'ln -sfn #{release_path} #{tmp_link} && mv -T #{tmp_link} #{current_path}'"
      end
    end
  end
end

namespace :rollback_watcher do
  desc "Tell rollback-watcher that the release now current was deployed (a deploy or a rollback)"
  task :mark_deployed do
    on release_roles(:all) do |server|
      release = File.basename(release_path.to_s)
      # The deploy is done whatever the answer: a watcher that is down sees `current` at its
      # next poll, and one that refuses (the release is no longer current: it may have rolled
      # it back already) says why in `rollback-watcher status`. Warn, never fail the deploy.
      unless test(fetch(:watcher_bin), "mark", "deployed", release, "--config", fetch(:watcher_config))
        warn "rollback-watcher on #{server} did not record the deploy of #{release}: " \
             "see `rollback-watcher status` there"
      end
    end
  end
end

after "deploy:published", "rollback_watcher:mark_deployed"
