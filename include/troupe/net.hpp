// Network I/O on the shard's ring: addresses, sockets and their options,
// stream operations (accept, connect, send, recv, shutdown, close),
// datagrams with addresses and descriptor passing. See
// doc/io.md, "Network".
#pragma once

#include <troupe/net/address.hpp>
#include <troupe/net/datagram.hpp>
#include <troupe/net/framing.hpp>
#include <troupe/net/socket.hpp>
#include <troupe/net/tcp.hpp>
