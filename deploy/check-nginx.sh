#!/usr/bin/env bash
# `nginx -t` of one of our site configs on any machine, without installing it: the file is included in
# the http{} block of a throwaway nginx.conf (events{}, pid, logs and temp paths in a scratch directory,
# the proxy cache there too), as Debian's nginx.conf includes sites-enabled/*.
#
#   deploy/check-nginx.sh deploy/nginx-proxy.conf      # or deploy/nginx-static.conf, or your edited copy
#
# It checks syntax, directives and their contexts; it binds no port and needs no root. The same wrapper
# is what tests/test_nginx*.py run the files under.
set -euo pipefail
site=${1:?usage: $0 SITE.conf}
nginx=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/temp" "$scratch/cache"
# The proxy cache lives under /var/cache on a server; here, in the scratch directory.
sed "s|proxy_cache_path /var/cache/nginx-syndicator |proxy_cache_path \"$scratch/cache\" |" "$site" > "$scratch/site.conf"
user=""
[ "$(id -u)" = 0 ] && user="user root;"
cat > "$scratch/nginx.conf" <<CONF
$user
worker_processes 1;
pid "$scratch/nginx.pid";
error_log "$scratch/error.log";
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path "$scratch/temp/client_body";
    proxy_temp_path "$scratch/temp/proxy";
    fastcgi_temp_path "$scratch/temp/fastcgi";
    uwsgi_temp_path "$scratch/temp/uwsgi";
    scgi_temp_path "$scratch/temp/scgi";
    include "$scratch/site.conf";
}
CONF
exec "$nginx" -t -p "$scratch/" -e "$scratch/error.log" -c "$scratch/nginx.conf"
