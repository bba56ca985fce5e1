// Open accounts by status: how many accounts are open, blocked and closed, and each account's status.
// Reads $ce-account (every account-{id} stream).
function accountOf(e) { return e.streamId.substring('account-'.length); }

function move(s, e, status) {
  var id = accountOf(e);
  var previous = s.accounts[id];
  if (previous === undefined || previous === status) { return; }
  s[previous] -= 1;
  s[status] += 1;
  s.accounts[id] = status;
}

fromCategory('account')
  .when({
    $init: function () { return { open: 0, blocked: 0, closed: 0, accounts: {} }; },
    AccountOpened: function (s, e) {
      if (s.accounts[accountOf(e)] === undefined) {
        s.accounts[accountOf(e)] = 'open';
        s.open += 1;
      }
    },
    AccountBlocked: function (s, e) { move(s, e, 'blocked'); },
    AccountUnblocked: function (s, e) { move(s, e, 'open'); },
    AccountClosed: function (s, e) { move(s, e, 'closed'); }
  })
  .outputState();
