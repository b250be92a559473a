// The dashboard in the browser: reads the session, then the apps the session's key may see.
const root = document.getElementById('app')!;
root.textContent = 'berth';
